//! Running a command: load the aggregate, decide, append; idempotent by command id.
//!
//! **Idempotency checks what it replays.** A command id (the web edge's
//! `Idempotency-Key`) is recorded with what the command asked for — its name, the
//! aggregate, a fingerprint of its input supplied by the edge, and the principal (the
//! authenticated account's id when the command has one, else the user's name; see
//! [`CommandContext::principal`]) — and with its first outcome: succeeded (the versions it appended, in the same statement
//! as its events) or rejected by the aggregate (the rejection, recorded when the command
//! was refused on the freshly read state; it appends nothing). A repeat is answered with
//! that first outcome, not with whatever the current state would give: a success
//! returns the recorded versions with `duplicate: true`, a rejection is returned again.
//! A repeat that asks for something else is refused with `IdempotencyKeyReused` and
//! appends nothing. Store failures (a version conflict, a taken barcode, a database
//! error) are not recorded: retrying them with the same key tries again.
//!
//! The first outcome is whichever row lands in `commands` first (its primary key), so
//! concurrent repeats agree: a success and a rejection racing for one id cannot both be
//! recorded, because the success's statement fails on the key (appending nothing) or
//! the rejection's insert finds the id taken, and either way the loser answers with
//! the recorded outcome.

use crate::append::{AppendRequest, NewEvent, SnapshotWrite, UniqueClaim};
use crate::error::{CommandError, StoreError};
use crate::follow::LogCursor;
use crate::metadata::CommandContext;
use crate::store::{EventStore, Loaded, RecordedCommand, RecordedOutcome};
use cqrs::{Aggregate, DomainEvent};
use uuid::Uuid;

/// What the caller believes the aggregate's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Whatever it is now: on a concurrent change the command is decided again on the
    /// newer state (the business rules are checked again, so nothing invalid slips in).
    Any,
    /// Exactly this version (e.g. the version the user saw); otherwise `Conflict`.
    Exactly(u64),
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub aggregate_id: Uuid,
    pub command_id: Uuid,
    /// The aggregate's version before and after the command's events.
    pub first_version: u64,
    pub last_version: u64,
    /// Where the last event is in the log (absent for a repeated command).
    pub cursor: Option<LogCursor>,
    /// True when this repeated a command id that had already succeeded: the versions are
    /// the ones its first run appended.
    pub duplicate: bool,
}

const MAX_ATTEMPTS: usize = 5;

impl EventStore {
    /// Executes `command` against aggregate `aggregate_id`.
    ///
    /// The aggregate's state comes from the cache of recently written states when it is
    /// there (see [`crate::cache`]); a command that must create the aggregate
    /// (`Exactly(0)`) is decided on the empty state without a read. Both are guesses that
    /// the append's version check confirms.
    ///
    /// A repeat of a command id that already succeeded returns the first outcome and
    /// appends nothing. The check is made only when the command would otherwise fail
    /// (rejected, conflicting, or its id already recorded) or decides to do nothing, so
    /// the common path costs no extra query: a repeat necessarily ends in one of those.
    #[tracing::instrument(name = "command", skip_all, fields(
        aggregate_type = A::TYPE,
        aggregate_id = %aggregate_id,
        command_id = %context.command_id,
        user = %context.user,
    ))]
    pub async fn execute<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
        command: A::Command,
        context: &CommandContext,
        expected: ExpectedVersion,
    ) -> Result<CommandOutcome, CommandError<A::Rejection>>
    where
        A::Command: Clone,
    {
        let mut read_fresh = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let (loaded, fresh) = self
                .current::<A>(aggregate_id, expected, read_fresh)
                .await?;
            read_fresh = true;
            if let ExpectedVersion::Exactly(v) = expected
                && v != loaded.version
            {
                if !fresh {
                    continue;
                }
                return self
                    .repeated_or::<A>(
                        aggregate_id,
                        context,
                        StoreError::Conflict {
                            aggregate_id,
                            expected: v,
                        },
                    )
                    .await;
            }
            let events = match loaded.state.handle(command.clone()) {
                Ok(events) => events,
                // A rejection must hold against the stored state, not a cached guess.
                Err(_) if !fresh => continue,
                // A repeat whose first outcome is recorded finds the id taken here and
                // answers with that outcome.
                Err(rejection) => return self.reject::<A>(aggregate_id, context, rejection).await,
            };
            if events.is_empty() {
                // Nothing to do is not proof of a first attempt: a repeat (or a reused
                // key) must still get the recorded first outcome (or the refusal).
                if let Some(first) = self.first_outcome::<A>(aggregate_id, context).await {
                    return first;
                }
                return Ok(CommandOutcome {
                    aggregate_id,
                    command_id: context.command_id,
                    first_version: loaded.version,
                    last_version: loaded.version,
                    cursor: None,
                    duplicate: false,
                });
            }
            let (own, children) = split_decision::<A>(events);
            let (request, new_state) =
                self.request::<A>(aggregate_id, loaded.version, loaded.state, &own, context)?;
            let appended = if children.is_empty() {
                self.append(request).await
            } else {
                self.append_with_children::<A>(request, children, context)
                    .await
            };
            match appended {
                Ok(appended) => {
                    self.cache
                        .put(aggregate_id, new_state, appended.last_version);
                    return Ok(CommandOutcome {
                        aggregate_id,
                        command_id: context.command_id,
                        first_version: appended.first_version,
                        last_version: appended.last_version,
                        cursor: Some(appended.cursor),
                        duplicate: false,
                    });
                }
                Err(StoreError::Conflict { .. }) if expected == ExpectedVersion::Any || !fresh => {
                    self.cache.forget(aggregate_id);
                    if let Some(first) = self.first_outcome::<A>(aggregate_id, context).await {
                        return first;
                    }
                    tracing::debug!(
                        attempt,
                        "concurrent change; deciding again on the stored state"
                    );
                }
                Err(error @ (StoreError::Conflict { .. } | StoreError::DuplicateCommand(_))) => {
                    self.cache.forget(aggregate_id);
                    return self.repeated_or::<A>(aggregate_id, context, error).await;
                }
                Err(error) => {
                    self.cache.forget(aggregate_id);
                    return Err(error.into());
                }
            }
        }
        let last_expected = match expected {
            ExpectedVersion::Exactly(v) => v,
            ExpectedVersion::Any => 0,
        };
        self.repeated_or::<A>(
            aggregate_id,
            context,
            StoreError::Conflict {
                aggregate_id,
                expected: last_expected,
            },
        )
        .await
    }

    /// The aggregate as the command should see it, and whether it was read just now.
    /// Unless `read_fresh`, a command that must create the aggregate starts from the empty
    /// state and any other starts from the cached state, both without a read.
    async fn current<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        read_fresh: bool,
    ) -> Result<(Loaded<A>, bool), StoreError> {
        if !read_fresh {
            if expected == ExpectedVersion::Exactly(0) {
                return Ok((
                    Loaded {
                        state: A::default(),
                        version: 0,
                    },
                    false,
                ));
            }
            if let Some((state, version)) = self.cache.get::<A>(aggregate_id) {
                return Ok((Loaded { state, version }, false));
            }
        }
        Ok((self.load::<A>(aggregate_id).await?, true))
    }

    async fn repeated_or<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
        context: &CommandContext,
        error: StoreError,
    ) -> Result<CommandOutcome, CommandError<A::Rejection>> {
        match self.first_outcome::<A>(aggregate_id, context).await {
            Some(first) => first,
            None => Err(error.into()),
        }
    }

    /// The answer to a repeat of `context`'s command id, if the id is recorded.
    async fn first_outcome<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
        context: &CommandContext,
    ) -> Option<Result<CommandOutcome, CommandError<A::Rejection>>> {
        match self.command_outcome(context.command_id).await {
            Ok(None) => None,
            Ok(Some(first)) => Some(replay::<A>(first, aggregate_id, context)),
            Err(error) => Some(Err(error.into())),
        }
    }

    /// Records the rejection as the command's first outcome and returns it; when a
    /// concurrent repeat recorded an outcome first, that one is the answer. A rejection of
    /// a command whose id the caller did not choose is not recorded (nobody can send that
    /// id again, and recording it would let anyone grow the table with refused requests);
    /// it is still answered with the first outcome if that id already succeeded.
    async fn reject<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
        context: &CommandContext,
        rejection: A::Rejection,
    ) -> Result<CommandOutcome, CommandError<A::Rejection>> {
        if !context.repeatable {
            if let Some(first) = self.first_outcome::<A>(aggregate_id, context).await {
                return first;
            }
            return Err(CommandError::Rejected(rejection));
        }
        let recorded = self
            .record_rejection(
                context,
                A::TYPE,
                aggregate_id,
                serde_json::to_value(&rejection).map_err(StoreError::from)?,
            )
            .await?;
        if !recorded && let Some(first) = self.first_outcome::<A>(aggregate_id, context).await {
            return first;
        }
        Err(CommandError::Rejected(rejection))
    }

    /// Appends a decision that creates other aggregates (see `Aggregate::belongs_to`):
    /// the deciding aggregate's request and one new stream per child, all or nothing.
    async fn append_with_children<A: Aggregate>(
        &self,
        request: AppendRequest,
        children: Children<A>,
        context: &CommandContext,
    ) -> Result<crate::append::Appended, StoreError> {
        let mut requests = vec![request];
        for (child_id, events) in children {
            let (mut child, _) = self.request::<A>(child_id, 0, A::default(), &events, context)?;
            // The command is recorded once, on the deciding aggregate.
            child.command_id = None;
            child.command_name = None;
            child.fingerprint = None;
            child.principal = None;
            requests.push(child);
        }
        let mut appended = self.append_together(&requests).await?;
        if appended.is_empty() {
            return Err(StoreError::Closed);
        }
        Ok(appended.swap_remove(0))
    }

    fn request<A: Aggregate>(
        &self,
        aggregate_id: Uuid,
        version: u64,
        state: A,
        events: &[A::Event],
        context: &CommandContext,
    ) -> Result<(AppendRequest, A), StoreError> {
        let metadata = context.event_metadata();
        let new_events = events
            .iter()
            .map(|event| {
                Ok(NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event.event_type(),
                    schema_version: A::Event::SCHEMA_VERSION,
                    payload: event.to_payload()?.to_string(),
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let unique_claims = claims(
            events
                .iter()
                .flat_map(|e| A::unique_values_of(aggregate_id, e)),
        );
        let released_claims = claims(events.iter().flat_map(A::released_values));
        let last_version = version + events.len() as u64;
        let every = self.config().snapshot_every;
        let state = state.fold(events.iter());
        let snapshot = if every > 0 && last_version / every > version / every {
            Some(SnapshotWrite {
                state_version: A::SNAPSHOT_VERSION,
                state: serde_json::to_string(&state)?,
            })
        } else {
            None
        };
        let request = AppendRequest {
            aggregate_type: A::TYPE,
            aggregate_id,
            expected_version: version,
            events: new_events,
            command_id: Some(context.command_id),
            command_name: context.command_name.clone(),
            fingerprint: context.fingerprint.clone(),
            principal: Some(context.principal()),
            unique_claims,
            released_claims,
            snapshot,
        };
        Ok((request, state))
    }
}

/// The new aggregates of a decision, each with its first events.
type Children<A> = Vec<(Uuid, Vec<<A as Aggregate>::Event>)>;

/// A decision's events split into the deciding aggregate's own and those of the
/// aggregates it creates, grouped per new aggregate in decision order.
fn split_decision<A: Aggregate>(events: Vec<A::Event>) -> (Vec<A::Event>, Children<A>) {
    let mut own = Vec::with_capacity(events.len());
    let mut children: Vec<(Uuid, Vec<A::Event>)> = Vec::new();
    for event in events {
        match A::belongs_to(&event) {
            None => own.push(event),
            Some(id) => match children.iter_mut().find(|(c, _)| *c == id) {
                Some((_, list)) => list.push(event),
                None => children.push((id, vec![event])),
            },
        }
    }
    (own, children)
}

fn claims(values: impl Iterator<Item = (&'static str, String)>) -> Vec<UniqueClaim> {
    values
        .map(|(scope, value)| UniqueClaim {
            scope: scope.to_owned(),
            value,
        })
        .collect()
}

/// The first outcome of a command id, as the answer to a repeat: refused when the repeat
/// asks for something else than the recorded command did.
fn replay<A: Aggregate>(
    first: RecordedCommand,
    aggregate_id: Uuid,
    context: &CommandContext,
) -> Result<CommandOutcome, CommandError<A::Rejection>> {
    let same_request = first.aggregate_type == A::TYPE
        && first.aggregate_id == aggregate_id
        && (!first.request_known
            || (first.command_name == context.command_name
                && first.fingerprint == context.fingerprint
                && first.principal.as_deref() == Some(context.principal().as_str())));
    if !same_request {
        return Err(StoreError::IdempotencyKeyReused {
            command_id: first.command_id,
        }
        .into());
    }
    match first.outcome {
        RecordedOutcome::Succeeded {
            first_version,
            last_version,
        } => Ok(CommandOutcome {
            aggregate_id: first.aggregate_id,
            command_id: first.command_id,
            first_version,
            last_version,
            cursor: None,
            duplicate: true,
        }),
        RecordedOutcome::Rejected(rejection) => Err(CommandError::Rejected(
            serde_json::from_value(rejection).map_err(StoreError::from)?,
        )),
    }
}
