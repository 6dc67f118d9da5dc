//! Converting librdkafka errors to [`baseshift_core::Error`] at the crate boundary.

use baseshift_core::{Error, ErrorKind};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The backend name carried by every error of this crate.
pub(crate) const BACKEND: &str = "kafka";

/// The kind of a librdkafka error code.
pub(crate) fn kind_of_code(code: RDKafkaErrorCode) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue => ErrorKind::Timeout,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => ErrorKind::NotFound,
        C::TopicAlreadyExists => ErrorKind::Conflict,
        // A rejected message or configuration is not fixed by retrying it unchanged.
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidTopic
        | C::InvalidConfig
        | C::InvalidArgument
        | C::InvalidRequest
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::PolicyViolation
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication => ErrorKind::InvalidInput,
        C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::UnsupportedSASLMechanism
        | C::UnsupportedCompressionType
        | C::UnsupportedForMessageFormat
        | C::UnsupportedAssignor => ErrorKind::Unsupported,
        C::Fatal => ErrorKind::Internal,
        _ => ErrorKind::Unavailable,
    }
}

/// The kind of a librdkafka error.
pub(crate) fn kind_of(err: &KafkaError) -> ErrorKind {
    match err {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Subscription(_) => {
            ErrorKind::InvalidInput
        }
        KafkaError::Canceled => ErrorKind::Cancelled,
        KafkaError::AdminOp(code) => kind_of_code(*code),
        KafkaError::Nul(_) => ErrorKind::InvalidInput,
        other => other.rdkafka_error_code().map_or(ErrorKind::Internal, kind_of_code),
    }
}

/// A baseshift error for `err`, raised by `operation`, with `what` saying what was attempted.
pub(crate) fn kafka_error(operation: &'static str, what: impl std::fmt::Display, err: KafkaError) -> Error {
    Error::new(kind_of(&err), format!("{what}: {err}")).with_operation(operation).with_backend(BACKEND).with_source(err)
}

/// A baseshift error of `kind` raised by `operation`.
pub(crate) fn error(kind: ErrorKind, operation: &'static str, message: impl Into<String>) -> Error {
    Error::new(kind, message).with_operation(operation).with_backend(BACKEND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds_callers_can_act_on() {
        assert_eq!(kind_of_code(RDKafkaErrorCode::MessageTimedOut), ErrorKind::Timeout);
        assert_eq!(kind_of_code(RDKafkaErrorCode::UnknownTopicOrPartition), ErrorKind::NotFound);
        assert_eq!(kind_of_code(RDKafkaErrorCode::AllBrokersDown), ErrorKind::Unavailable);
        assert_eq!(kind_of_code(RDKafkaErrorCode::QueueFull), ErrorKind::Unavailable);
        assert_eq!(kind_of_code(RDKafkaErrorCode::MessageSizeTooLarge), ErrorKind::InvalidInput);
        assert_eq!(kind_of_code(RDKafkaErrorCode::TopicAuthorizationFailed), ErrorKind::InvalidInput);
        assert!(kind_of_code(RDKafkaErrorCode::BrokerTransportFailure).is_retryable());
    }

    #[test]
    fn errors_carry_operation_backend_and_source() {
        let e = kafka_error(
            "EventBus::publish",
            "publish to `job_events`",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        );
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.operation(), Some("EventBus::publish"));
        assert_eq!(e.backend(), Some("kafka"));
        assert!(e.message().contains("job_events"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(kind_of(&KafkaError::ClientCreation("bad".into())), ErrorKind::InvalidInput);
        assert_eq!(kind_of(&KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)), ErrorKind::Timeout);
    }
}
