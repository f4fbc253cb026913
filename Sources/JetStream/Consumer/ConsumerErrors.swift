// The consumer API's errors from 2.9.10's catalogue that the stream half does not use.

extension JetStreamAPIError {
    /// 10016 JSConsumerDurableNameNotInSubjectErr.
    public static let consumerDurableNameNotInSubject = JetStreamAPIError(
        code: 400, errCode: 10016, text: "consumer expected to be durable but no durable name set in subject")
    /// 10078 JSConsumerConfigRequiredErr.
    public static let consumerConfigRequired = JetStreamAPIError(code: 400, errCode: 10078, text: "consumer config required")
    /// 10079 JSConsumerDeliverToWildcardsErr.
    public static let consumerDeliverToWildcards = JetStreamAPIError(code: 400, errCode: 10079, text: "consumer deliver subject has wildcards")
    /// 10080 JSConsumerPushMaxWaitingErr.
    public static let consumerPushMaxWaiting = JetStreamAPIError(code: 400, errCode: 10080, text: "consumer in push mode can not set max waiting")
    /// 10081 JSConsumerDeliverCycleErr.
    public static let consumerDeliverCycle = JetStreamAPIError(code: 400, errCode: 10081, text: "consumer deliver subject forms a cycle")
    /// 10082 JSConsumerMaxPendingAckPolicyRequiredErr.
    public static let consumerMaxPendingAckPolicyRequired = JetStreamAPIError(
        code: 400, errCode: 10082, text: "consumer requires ack policy for max ack pending")
    /// 10083 JSConsumerSmallHeartbeatErr.
    public static let consumerSmallHeartbeat = JetStreamAPIError(code: 400, errCode: 10083, text: "consumer idle heartbeat needs to be >= 100ms")
    /// 10084 JSConsumerPullRequiresAckErr.
    public static let consumerPullRequiresAck = JetStreamAPIError(code: 400, errCode: 10084, text: "consumer in pull mode requires ack policy")
    /// 10086 JSConsumerPullWithRateLimitErr.
    public static let consumerPullWithRateLimit = JetStreamAPIError(
        code: 400, errCode: 10086, text: "consumer in pull mode can not have rate limit set")
    /// 10087 JSConsumerMaxWaitingNegativeErr.
    public static let consumerMaxWaitingNegative = JetStreamAPIError(code: 400, errCode: 10087, text: "consumer max waiting needs to be positive")
    /// 10088 JSConsumerHBRequiresPushErr.
    public static let consumerHeartbeatRequiresPush = JetStreamAPIError(
        code: 400, errCode: 10088, text: "consumer idle heartbeat requires a push based consumer")
    /// 10089 JSConsumerFCRequiresPushErr.
    public static let consumerFlowControlRequiresPush = JetStreamAPIError(
        code: 400, errCode: 10089, text: "consumer flow control requires a push based consumer")
    /// 10090 JSConsumerDirectRequiresPushErr.
    public static let consumerDirectRequiresPush = JetStreamAPIError(code: 400, errCode: 10090, text: "consumer direct requires a push based consumer")
    /// 10091 JSConsumerDirectRequiresEphemeralErr.
    public static let consumerDirectRequiresEphemeral = JetStreamAPIError(
        code: 400, errCode: 10091, text: "consumer direct requires an ephemeral consumer")
    /// 10094 JSConsumerInvalidPolicyErrF (`{err}` names the conflict).
    public static func consumerInvalidPolicy(_ err: String) -> JetStreamAPIError { .init(code: 400, errCode: 10094, text: err) }
    /// 10095 JSConsumerInvalidSamplingErrF.
    public static func consumerInvalidSampling(_ err: String) -> JetStreamAPIError {
        .init(code: 400, errCode: 10095, text: "failed to parse consumer sampling configuration: " + err)
    }
    /// 10101 JSConsumerWQConsumerNotDeliverAllErr.
    public static let workQueueConsumerNotDeliverAll = JetStreamAPIError(
        code: 400, errCode: 10101, text: "consumer must be deliver all on workqueue stream")
    /// 10102 JSConsumerNameTooLongErrF.
    public static func consumerNameTooLong(_ max: Int) -> JetStreamAPIError {
        .init(code: 400, errCode: 10102, text: "consumer name is too long, maximum allowed is \(max)")
    }
    /// 10103 JSConsumerBadDurableNameErr.
    public static let consumerBadDurableName = JetStreamAPIError(code: 400, errCode: 10103, text: "durable name can not contain '.', '*', '>'")
    /// 10107 JSConsumerDescriptionTooLongErrF.
    public static func consumerDescriptionTooLong(_ max: Int) -> JetStreamAPIError {
        .init(code: 400, errCode: 10107, text: "consumer description is too long, maximum allowed is \(max)")
    }
    /// 10108 JSConsumerWithFlowControlNeedsHeartbeats.
    public static let consumerFlowControlNeedsHeartbeats = JetStreamAPIError(
        code: 400, errCode: 10108, text: "consumer with flow control also needs heartbeats")
    /// 10112 JSConsumerInvalidDeliverSubject.
    public static let consumerInvalidDeliverSubject = JetStreamAPIError(code: 400, errCode: 10112, text: "invalid push consumer deliver subject")
    /// 10114 JSConsumerMaxRequestBatchNegativeErr.
    public static let consumerMaxRequestBatchNegative = JetStreamAPIError(
        code: 400, errCode: 10114, text: "consumer max request batch needs to be > 0")
    /// 10115 JSConsumerMaxRequestExpiresToSmall.
    public static let consumerMaxRequestExpiresTooSmall = JetStreamAPIError(
        code: 400, errCode: 10115, text: "consumer max request expires needs to be >= 1ms")
    /// 10126 JSConsumerReplicasExceedsStream.
    public static let consumerReplicasExceedsStream = JetStreamAPIError(
        code: 400, errCode: 10126, text: "consumer config replica count exceeds parent stream")
    /// 10127 JSConsumerNameContainsPathSeparatorsErr.
    public static let consumerNameContainsPathSeparators = JetStreamAPIError(
        code: 400, errCode: 10127, text: "Consumer name can not contain path separators")
    /// 10132 JSConsumerCreateDurableAndNameMismatch.
    public static let consumerDurableAndNameMismatch = JetStreamAPIError(
        code: 400, errCode: 10132, text: "Consumer Durable and Name have to be equal if both are provided")
}
