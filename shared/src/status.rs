//! The HTTP status each [`Code`] maps to: the one decision every HTTP edge (the functions' API
//! answers, the console) shares.
//!
//! Invariants: [`http_status`] is an exhaustive match without a wildcard arm, so a new code does
//! not compile until it has a status.

use crate::code::Code;

/// The HTTP status an HTTP caller (API Gateway, an HTTP trigger, the console) sees for a failure with this code.
#[deny(clippy::wildcard_enum_match_arm)]
pub fn http_status(code: Code) -> u16 {
    match code {
        Code::InvalidInput
        | Code::PriceInvalid
        | Code::MissingMediaUrl
        | Code::PromptMissing
        | Code::PromptInvalid
        | Code::ParamsInvalid
        | Code::CatalogInvalid
        | Code::YamlInvalid
        | Code::BadType
        | Code::UnknownKey
        | Code::MissingField
        | Code::UnknownReference
        | Code::Duplicate
        | Code::Conflict
        | Code::BadUrl
        | Code::BadPolicy
        | Code::BadParam
        | Code::BadMessages
        | Code::BadMediaPart
        | Code::BadJsonSchema
        | Code::BadResponseFormat
        | Code::BadPromptReference
        | Code::KeyPlaceholder
        | Code::PlainKeyInFile
        | Code::UnfilledPlaceholder
        | Code::UnknownPartType
        | Code::NoPrompt
        | Code::NoMembers
        | Code::KeyUnresolved
        | Code::SuiteInvalid => 400,
        Code::ConfigNotFound
        | Code::RouteNotFound
        | Code::MappingNotFound
        | Code::ObjectNotFound => 404,
        Code::MediaUnsupported | Code::MediaTooLarge => 415,
        Code::SchemaInvalid | Code::LetterDetected | Code::EvalGateFailed => 422,
        Code::Http429RateLimit
        | Code::Http5xxServerError
        | Code::HttpStatusError
        | Code::NetworkTimeout
        | Code::NetworkError
        | Code::RequestError
        | Code::BadProviderResponse
        | Code::ResponseTooLarge
        | Code::ProviderRedirect
        | Code::ProviderUnreachable => 502,
        Code::DeadlineExceeded => 504,
        Code::AuthMissing
        | Code::AuthKeyUnknown
        | Code::AuthSignatureInvalid
        | Code::AuthTimestampSkew
        | Code::AuthReplay
        | Code::ConsoleTokenInvalid => 401,
        Code::AuthKeyDisabled
        | Code::AuthKeyExpired
        | Code::AuthIpDenied
        | Code::AuthScopeDenied
        | Code::ConsoleCrossOrigin => 403,
        Code::QuotaExceeded | Code::RateLimited => 429,
        Code::BudgetExceeded | Code::BudgetUnpriced => 402,
        Code::NoActiveMembers
        | Code::QueueUnavailable
        | Code::AuditSpooled
        | Code::AccessUnavailable => 503,
        Code::ConfigMissing
        | Code::ConfigInvalid
        | Code::IoError
        | Code::DbNotInitialized
        | Code::DbUnavailable
        | Code::DbError
        | Code::StoredJsonInvalid
        | Code::SchemaOutdated
        | Code::PepperMissing
        | Code::EncryptedKeyInvalid
        | Code::DecryptFailed
        | Code::ObjectAccessDenied
        | Code::ObjectOperationUnsupported
        | Code::ObjectStoreUnavailable
        | Code::ObjectFailed
        | Code::DoctorFailed
        | Code::DemoProviderFailed
        | Code::ConsoleBindFailed
        | Code::QuickstartUploadFailed => 500,
    }
}
