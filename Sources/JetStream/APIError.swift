import Formats

/// A JetStream API error as nats-server 2.9.10 sends it inside a response:
/// `"error":{"code":<http status>,"err_code":<JetStream code>,"description":"..."}`.
/// The codes and texts are 2.9.10's (its errors catalogue); a templated description (`{err}`,
/// `{seq}`, `{id}`) is filled the way 2.9.10 fills it. Only the errors the stream and consumer API
/// needs are here.
public struct JetStreamAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `code`: the HTTP-like status (400, 404, 500, 503).
    public var code: Int
    /// `err_code`: the JetStream error number (10003, 10059, ...).
    public var errCode: Int
    /// `description`.
    public var text: String

    public init(code: Int, errCode: Int, text: String) {
        self.code = code
        self.errCode = errCode
        self.text = text
    }

    public var description: String { "\(text) (\(code), err_code \(errCode))" }

    /// The error object, `{"code":..,"err_code":..,"description":".."}`, written as 2.9.10 writes it.
    public func write(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"code":"#.utf8)
        JSONWriter.appendDecimal(Int64(code), to: &out)
        out.append(contentsOf: #","err_code":"#.utf8)
        JSONWriter.appendDecimal(Int64(errCode), to: &out)
        if !text.isEmpty {
            out.append(contentsOf: #","description":"#.utf8)
            JetStreamJSON.appendString(text, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    // MARK: The catalogue (2.9.10's constants named in each comment)

    /// 10003 JSBadRequestErr.
    public static let badRequest = JetStreamAPIError(code: 400, errCode: 10003, text: "bad request")
    /// 10012 JSConsumerCreateErrF: a consumer could not be created (`{err}` is why).
    public static func consumerCreate(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10012, text: err) }
    /// 10013 JSConsumerNameExistErr.
    public static let consumerNameExists = JetStreamAPIError(code: 400, errCode: 10013, text: "consumer name already in use")
    /// 10014 JSConsumerNotFoundErr.
    public static let consumerNotFound = JetStreamAPIError(code: 404, errCode: 10014, text: "consumer not found")
    /// 10017 JSConsumerDurableNameNotMatchSubjectErr.
    public static let consumerDurableNameMismatch = JetStreamAPIError(
        code: 400, errCode: 10017, text: "consumer name in subject does not match durable name in request")
    /// 10018 JSConsumerDurableNameNotSetErr.
    public static let consumerDurableNameNotSet = JetStreamAPIError(
        code: 400, errCode: 10018, text: "consumer expected to be durable but a durable name was not set")
    /// 10020 JSConsumerEphemeralWithDurableNameErr.
    public static let consumerEphemeralWithDurableName = JetStreamAPIError(
        code: 400, errCode: 10020, text: "consumer expected to be ephemeral but a durable name was set in request")
    /// 10023 JSInsufficientResourcesErr.
    public static let insufficientResources = JetStreamAPIError(code: 503, errCode: 10023, text: "insufficient resources")
    /// 10025 JSInvalidJSONErr: the request body is not JSON of the expected shape.
    public static let invalidJSON = JetStreamAPIError(code: 400, errCode: 10025, text: "invalid JSON")
    /// 10026 JSMaximumConsumersLimitErr.
    public static let maximumConsumers = JetStreamAPIError(code: 400, errCode: 10026, text: "maximum consumers limit reached")
    /// 10027 JSMaximumStreamsLimitErr.
    public static let maximumStreams = JetStreamAPIError(code: 400, errCode: 10027, text: "maximum number of streams reached")
    /// 10028 JSMemoryResourcesExceededErr: a memory stream's max_bytes does not fit the server's max_memory.
    public static let memoryResourcesExceeded = JetStreamAPIError(
        code: 500, errCode: 10028, text: "insufficient memory resources available")
    /// 10037 JSNoMessageFoundErr.
    public static let noMessageFound = JetStreamAPIError(code: 404, errCode: 10037, text: "no message found")
    /// 10038 JSNotEmptyRequestErr: STREAM.DELETE, consumer INFO and DELETE with a body.
    public static let notEmptyRequest = JetStreamAPIError(code: 400, errCode: 10038, text: "expected an empty request payload")
    /// 10039 JSNotEnabledForAccountErr.
    public static let notEnabledForAccount = JetStreamAPIError(code: 503, errCode: 10039, text: "JetStream not enabled for account")
    /// 10043 JSSequenceNotFoundErrF: MSG.DELETE of a sequence the store no longer holds.
    public static func sequenceNotFound(_ seq: UInt64) -> JetStreamAPIError {
        .init(code: 400, errCode: 10043, text: "sequence \(seq) not found")
    }
    /// 10047 JSStorageResourcesExceededErr: a file stream's max_bytes does not fit the server's max_store.
    public static let storageResourcesExceeded = JetStreamAPIError(
        code: 500, errCode: 10047, text: "insufficient storage resources available")
    /// 10049 JSStreamCreateErrF: a create failed for a reason that has no error of its own.
    public static func streamCreate(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10049, text: err) }
    /// 10050 JSStreamDeleteErrF: removing a stream's files failed.
    public static func streamDelete(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10050, text: err) }
    /// 10051 JSStreamGeneralErrorF: a purge the store refused (`{err}` is why).
    public static func streamGeneral(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10051, text: err) }
    /// 10052 JSStreamInvalidConfigF: the configuration breaks a rule (`{err}` says which).
    public static func streamInvalidConfig(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10052, text: err) }
    /// 10054 JSStreamMessageExceedsMaximumErr.
    public static let messageExceedsMaximum = JetStreamAPIError(code: 400, errCode: 10054, text: "message size exceeds maximum allowed")
    /// 10056 JSStreamMismatchErr: the name in the subject is not the name in the body.
    public static let streamMismatch = JetStreamAPIError(code: 400, errCode: 10056, text: "stream name in subject does not match request")
    /// 10057 JSStreamMsgDeleteFailedF ("message delete not permitted" for deny_delete, or the store's reason).
    public static func streamMessageDeleteFailed(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10057, text: err) }
    /// 10058 JSStreamNameExistErr.
    public static let streamNameExists = JetStreamAPIError(
        code: 400, errCode: 10058, text: "stream name already in use with a different configuration")
    /// 10059 JSStreamNotFoundErr.
    public static let streamNotFound = JetStreamAPIError(code: 404, errCode: 10059, text: "stream not found")
    /// 10060 JSStreamNotMatchErr: `Nats-Expected-Stream` names another stream.
    public static let streamNotMatch = JetStreamAPIError(code: 400, errCode: 10060, text: "expected stream does not match")
    /// 10065 JSStreamSubjectOverlapErr.
    public static let streamSubjectOverlap = JetStreamAPIError(code: 400, errCode: 10065, text: "subjects overlap with an existing stream")
    /// 10070 JSStreamWrongLastMsgIDErrF: `Nats-Expected-Last-Msg-Id` differs (`{id}` is the stream's last id).
    public static func streamWrongLastMessageID(_ id: String) -> JetStreamAPIError {
        .init(code: 400, errCode: 10070, text: "wrong last msg ID: \(id)")
    }
    /// 10069 JSStreamUpdateErrF: an update the store or the catalogue could not carry out.
    public static func streamUpdate(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10069, text: err) }
    /// 10071 JSStreamWrongLastSequenceErrF (`{seq}` is the stream's, or the subject's, last sequence).
    public static func streamWrongLastSequence(_ seq: UInt64) -> JetStreamAPIError {
        .init(code: 400, errCode: 10071, text: "wrong last sequence: \(seq)")
    }
    /// 10074 JSStreamReplicasNotSupportedErr.
    public static let replicasNotSupported = JetStreamAPIError(
        code: 500, errCode: 10074, text: "replicas > 1 not supported in non-clustered mode")
    /// 10077 JSStreamStoreFailedF: storing failed (`{err}` is the store's reason).
    public static func streamStoreFailed(_ err: String) -> JetStreamAPIError { .init(code: 503, errCode: 10077, text: err) }
    /// 10093 JSConsumerFilterNotSubsetErr.
    public static let consumerFilterNotSubset = JetStreamAPIError(
        code: 400, errCode: 10093, text: "consumer filter subject is not a valid subset of the interest subjects")
    /// 10097 JSStreamHeaderExceedsMaximumErr.
    public static let headerExceedsMaximum = JetStreamAPIError(code: 400, errCode: 10097, text: "header size exceeds maximum allowed of 64k")
    /// 10098 JSConsumerWQRequiresExplicitAckErr.
    public static let workQueueRequiresExplicitAck = JetStreamAPIError(code: 400, errCode: 10098, text: "workqueue stream requires explicit ack")
    /// 10099 JSConsumerWQMultipleUnfilteredErr.
    public static let workQueueMultipleUnfiltered = JetStreamAPIError(
        code: 400, errCode: 10099, text: "multiple non-filtered consumers not allowed on workqueue stream")
    /// 10100 JSConsumerWQConsumerNotUniqueErr.
    public static let workQueueConsumerNotUnique = JetStreamAPIError(
        code: 400, errCode: 10100, text: "filtered consumer not unique on workqueue stream")
    /// 10109 JSStreamSealedErr.
    public static let streamSealed = JetStreamAPIError(code: 400, errCode: 10109, text: "invalid operation on sealed stream")
    /// 10110 JSStreamPurgeFailedF ("stream purge not permitted" for deny_purge).
    public static func streamPurgeFailed(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10110, text: err) }
    /// 10111 JSStreamRollupFailedF.
    public static func streamRollupFailed(_ err: String) -> JetStreamAPIError { .init(code: 500, errCode: 10111, text: err) }
    /// 10116 JSConsumerMaxDeliverBackoffErr.
    public static let consumerMaxDeliverBackoff = JetStreamAPIError(
        code: 400, errCode: 10116, text: "max deliver is required to be > length of backoff values")
    /// 10128 JSStreamNameContainsPathSeparatorsErr.
    public static let streamNameContainsPathSeparators = JetStreamAPIError(
        code: 400, errCode: 10128, text: "Stream name can not contain path separators")
    /// 10131 JSConsumerCreateFilterSubjectMismatchErr.
    public static let consumerCreateFilterSubjectMismatch = JetStreamAPIError(
        code: 400, errCode: 10131, text: "Consumer create request did not match filtered subject from create subject")
    /// 10133 JSReplicasCountCannotBeNegative.
    public static let replicasCountNegative = JetStreamAPIError(code: 400, errCode: 10133, text: "replicas count cannot be negative")
}

/// Which API call a store error happened in: 2.9.10 answers the same store failure with a
/// different error depending on the call.
public enum StoreErrorContext: Sendable {
    /// Storing a published message (the PubAck's error).
    case publish
    /// `STREAM.MSG.GET`.
    case messageGet
    /// `STREAM.MSG.DELETE`.
    case messageDelete
    /// `STREAM.PURGE`.
    case purge
}

extension StreamStoreError {
    /// The API error 2.9.10 answers with when its store fails this way during `context`. A
    /// missing message on MSG.DELETE depends on more than the error: use
    /// ``JetStreamAPIError/messageDeleteMissing(sequence:lastSequence:storage:)`` for it.
    public func apiError(in context: StoreErrorContext) -> JetStreamAPIError {
        switch (self, context) {
        case (.messageTooLarge, _):
            return .messageExceedsMaximum
        case (.invalidPurge, _):
            // 2.9.10's API refuses a purge with both seq and keep before the store sees it.
            return .badRequest
        case (.notFound, .messageGet):
            return .noMessageFound
        case (_, .messageDelete):
            return .streamMessageDeleteFailed(description)
        case (_, .purge):
            return .streamGeneral(description)
        case (.notFound, _):
            return .noMessageFound
        default:
            // Limits with discard new, and any I/O failure: the store refused the message.
            return .streamStoreFailed(description)
        }
    }
}

extension JetStreamAPIError {
    /// What 2.9.10 answers MSG.DELETE of a sequence its store does not hold: a memory store says
    /// only "not removed" (10043); a file store fails with "no message found" for sequence 0 or one
    /// below the stream's first sequence, with "stream store EOF" past the last sequence (both
    /// 10057), and says "not removed" (10043) for a sequence inside the stream that is already
    /// gone. (2.9.10's file store also answers "no message found" when every message of the block
    /// that held the sequence is gone; our store has no such blocks, so that case answers 10043 here.)
    public static func messageDeleteMissing(sequence: UInt64, firstSequence: UInt64 = 0, lastSequence: UInt64,
                                            storage: StorageType) -> JetStreamAPIError {
        switch storage {
        case .memory:
            return .sequenceNotFound(sequence)
        case .file:
            if sequence == 0 || sequence < firstSequence { return .streamMessageDeleteFailed("no message found") }
            if sequence > lastSequence { return .streamMessageDeleteFailed("stream store EOF") }
            return .sequenceNotFound(sequence)
        }
    }
}
