//! An HTTP client for the registry tests: a registry on a fresh database, and the calls
//! Confluent clients make, answered as (status, JSON body).

use reqwest::Method;
use serde_json::{Value, json};

pub type Answer = (u16, Value);
type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Registry {
    pub base: String,
    pub http: reqwest::Client,
}

impl Registry {
    /// A client of the registry at `base`.
    pub fn at(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// A registry of its own, open to every request, on a fresh database.
    pub async fn start() -> Result<Self, BoxError> {
        let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
        Ok(Self::at(kafka::testkit::registry(pool).await?))
    }

    /// A registry of its own whose changes need `token`.
    pub async fn start_with_token(token: &str) -> Result<Self, BoxError> {
        let (pool, _) = event_sourcing::testkit::fresh_database(5).await?;
        Ok(Self::at(
            kafka::testkit::registry_with_token(pool, token).await?,
        ))
    }

    /// A registry whose global level is NONE, as in Confluent's `RestApiTest`.
    pub async fn start_none() -> Result<Self, BoxError> {
        let r = Self::start().await?;
        let (status, _) = r.put("/config", json!({ "compatibility": "NONE" })).await?;
        assert_eq!(status, 200);
        Ok(r)
    }

    /// `authorization` is the whole header value, if any.
    pub async fn send_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        authorization: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/vnd.schemaregistry.v1+json");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        self.send_as(method, path, body, None).await
    }

    /// [`Self::send`], with the status as a `StatusCode`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(reqwest::StatusCode, Value), BoxError> {
        let (status, body) = self.send(method, path, body).await?;
        Ok((reqwest::StatusCode::from_u16(status)?, body))
    }

    pub async fn get(&self, path: &str) -> Result<Answer, reqwest::Error> {
        self.send(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, reqwest::Error> {
        self.send(Method::DELETE, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Answer, reqwest::Error> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Answer, reqwest::Error> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn register(&self, subject: &str, schema: &str) -> Result<Answer, reqwest::Error> {
        self.post(
            &format!("/subjects/{subject}/versions"),
            json!({ "schema": schema }),
        )
        .await
    }

    /// Registers and returns the id, failing the test on anything but 200.
    pub async fn id(&self, subject: &str, schema: &str) -> Result<i64, BoxError> {
        let (status, body) = self.register(subject, schema).await?;
        assert_eq!(status, 200, "registering under {subject}: {body}");
        Ok(body["id"].as_i64().ok_or("no id")?)
    }

    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
        deleted: bool,
    ) -> Result<Answer, reqwest::Error> {
        self.post(
            &format!("/subjects/{subject}?deleted={deleted}"),
            json!({ "schema": schema }),
        )
        .await
    }

    pub async fn compatible(
        &self,
        subject: &str,
        version: Option<&str>,
        schema: &str,
    ) -> Result<Answer, reqwest::Error> {
        let path = match version {
            Some(v) => format!("/compatibility/subjects/{subject}/versions/{v}?verbose=true"),
            None => format!("/compatibility/subjects/{subject}/versions?verbose=true"),
        };
        self.post(&path, json!({ "schema": schema })).await
    }

    /// GET with raw headers, returning the status, the Content-Type and the body.
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String, Value), reqwest::Error> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((
            status,
            content_type,
            response.json().await.unwrap_or(Value::Null),
        ))
    }
}
