//! A test-only aggregate, defined entirely here: its decider, its Avro schemas
//! (`schemas/Widget*.avsc`) and its read table. It proves that an aggregate goes through
//! store → relay → Kafka → registry → consumer → its own read table with no change to
//! the pipeline's code.

use cqrs::{Aggregate, DomainEvent};
use event_sourcing::{Envelope, Projection, ProjectionError};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

pub const SCHEMAS: &[&str] = &[
    include_str!("schemas/WidgetMade.avsc"),
    include_str!("schemas/WidgetPainted.avsc"),
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Widget {
    pub colour: Option<String>,
    pub coats: u32,
}

#[derive(Debug, Clone)]
pub enum WidgetCommand {
    Make { name: String },
    Paint { colour: String },
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum WidgetEvent {
    WidgetMade { name: String },
    WidgetPainted { colour: String, coats: u32 },
}

impl DomainEvent for WidgetEvent {
    const SCHEMA_VERSION: u32 = 1;
    const EVENT_TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("a widget is made once")]
pub struct WidgetRejection;

impl Aggregate for Widget {
    const TYPE: &'static str = "Widget";
    const SNAPSHOT_VERSION: u32 = 1;
    type Command = WidgetCommand;
    type Event = WidgetEvent;
    type Rejection = WidgetRejection;

    fn handle(&self, command: WidgetCommand) -> Result<Vec<WidgetEvent>, WidgetRejection> {
        Ok(match command {
            WidgetCommand::Make { name } => vec![WidgetEvent::WidgetMade { name }],
            WidgetCommand::Paint { colour } => vec![WidgetEvent::WidgetPainted {
                colour,
                coats: self.coats + 1,
            }],
        })
    }

    fn apply(&mut self, event: &WidgetEvent) {
        if let WidgetEvent::WidgetPainted { colour, coats } = event {
            self.colour = Some(colour.clone());
            self.coats = *coats;
        }
    }
}

/// The widgets read table (created by [`create_table`]).
pub struct WidgetsProjection;

pub async fn create_table(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS widgets (widget_id uuid PRIMARY KEY, name text NOT NULL, \
         colour text, coats integer NOT NULL DEFAULT 0, version bigint NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

impl Projection for WidgetsProjection {
    const NAME: &'static str = "widgets";
    type Aggregate = Widget;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope<WidgetEvent>,
    ) -> Result<(), ProjectionError> {
        let version = i64::try_from(event.version).unwrap_or(i64::MAX);
        let changed = match &event.payload {
            WidgetEvent::WidgetMade { name } => {
                sqlx::query("INSERT INTO widgets (widget_id, name, version) VALUES ($1, $2, $3)")
                    .bind(event.aggregate_id)
                    .bind(name)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            WidgetEvent::WidgetPainted { colour, coats } => sqlx::query(
                "UPDATE widgets SET colour = $2, coats = $3, version = $4 \
                 WHERE widget_id = $1 AND version = $4 - 1",
            )
            .bind(event.aggregate_id)
            .bind(colour)
            .bind(i32::try_from(*coats).unwrap_or(i32::MAX))
            .bind(version)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        };
        if changed == 1 {
            Ok(())
        } else {
            Err(ProjectionError::Permanent(format!(
                "widget {} is not at version {}",
                event.aggregate_id,
                version - 1
            )))
        }
    }
}
