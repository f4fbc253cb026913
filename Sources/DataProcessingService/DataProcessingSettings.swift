import ServiceKit

/// The data-processing service's settings: the standard ones (with this service's defaults for
/// the HTTP port, the data folder and the name) plus workers and the request limits.
public enum DataProcessingSettings {
    /// `HTTP_PORT`, default 8083.
    public static let httpPort = Setting<Int>.integer(
        "http_port", env: "HTTP_PORT", default: 8083, range: 0...65535,
        meaning: "HTTP listen port (0 picks a free one)")
    /// `DATA_DIR`, default `./data/data-processing-service`.
    public static let dataDirectory = Setting<String>.string(
        "data_dir", env: "DATA_DIR", default: "./data/data-processing-service",
        meaning: "folder reserved for the service's files (nothing is stored there: jobs and results live in JetStream, or in memory with EVENT_DELIVERY=at-most-once)")
    /// `WORKERS`: threads for chunk-wise pipeline work; 0 means one per CPU the process may run on.
    public static let workers = Setting<Int>.integer(
        "workers", env: "WORKERS", default: 0, range: 0...256,
        meaning: "threads per pipeline run (0: one per CPU in the process's affinity mask)")
    /// `CHUNK_SIZE`: records per chunk; 0 picks about 8 chunks per worker.
    public static let chunkSize = Setting<Int>.integer(
        "chunk_size", env: "CHUNK_SIZE", default: 0, range: 0...100_000_000,
        meaning: "records per chunk for parallel steps (0: about 8 chunks per worker, 1024...65536)")
    /// `MAX_INPUT_BYTES`: the largest request (NATS payload or HTTP body).
    public static let maxInputBytes = Setting<Int>.integer(
        "max_input_bytes", env: "MAX_INPUT_BYTES", default: 32 << 20, range: 1_024...(1 << 31),
        meaning: "largest transform or job request in bytes (HTTP answers 413 above it)")
    /// `MAX_RECORDS`: the most records in a dataset or produced by any step.
    public static let maxRecords = Setting<Int>.integer(
        "max_records", env: "MAX_RECORDS", default: 1_000_000, range: 1...100_000_000,
        meaning: "most records in an input dataset, in join_with, or out of any step")
    /// `MAX_PIPELINE_STEPS`.
    public static let maxPipelineSteps = Setting<Int>.integer(
        "max_pipeline_steps", env: "MAX_PIPELINE_STEPS", default: 32, range: 1...1_000,
        meaning: "most steps in one pipeline")
    /// `TIME_BUDGET_MS`: wall time one request may take (parse, pipeline, output).
    public static let timeBudget = Setting<Int>.integer(
        "time_budget_ms", env: "TIME_BUDGET_MS", default: 10_000, range: 1...3_600_000,
        meaning: "time budget per transform in milliseconds (checked between chunks and every 1024 records)")
    /// `MAX_CONCURRENT_TRANSFORMS`: synchronous transforms in flight (NATS and HTTP together).
    public static let maxConcurrentTransforms = Setting<Int>.integer(
        "max_concurrent_transforms", env: "MAX_CONCURRENT_TRANSFORMS", default: 4, range: 1...1_024,
        meaning: "synchronous transforms running at once; more are answered 429")
    /// `JOBS_MAX_RUNNING`.
    public static let jobsMaxRunning = Setting<Int>.integer(
        "jobs_max_running", env: "JOBS_MAX_RUNNING", default: 2, range: 1...64,
        meaning: "jobs running at once (per instance)")
    /// `JOBS_MAX_QUEUED`.
    public static let jobsMaxQueued = Setting<Int>.integer(
        "jobs_max_queued", env: "JOBS_MAX_QUEUED", default: 16, range: 0...10_000,
        meaning: "jobs waiting to run; a submit beyond running + queued is answered 429 (at-least-once: the DATA_JOBS stream holds at most running + queued jobs of every instance)")
    /// `JOBS_ACK_WAIT_S`: how long a delivered job may go without news before another delivery.
    public static let jobsAckWait = Setting<Int>.integer(
        "jobs_ack_wait_s", env: "JOBS_ACK_WAIT_S", default: 30, range: 3...3_600,
        meaning: "at-least-once: seconds a job taken by an instance that died waits before it is run again (a running job reports progress every third of it)")

    /// The service name in `$SRV`, logs and metrics.
    public static let serviceName = StandardSettings.serviceName(default: "data-processing")

    /// Every setting the service reads.
    public static var all: [AnySetting] {
        let own = [AnySetting(httpPort), AnySetting(dataDirectory)]
        let replaced = Set(own.map(\.key))
        let standard = StandardSettings.all(serviceName: "data-processing")
            .filter { !replaced.contains($0.key) && $0.key != "service_name" }
        return own + standard + [AnySetting(serviceName), AnySetting(workers), AnySetting(chunkSize),
                                 AnySetting(maxInputBytes), AnySetting(maxRecords), AnySetting(maxPipelineSteps),
                                 AnySetting(timeBudget), AnySetting(maxConcurrentTransforms),
                                 AnySetting(jobsMaxRunning), AnySetting(jobsMaxQueued), AnySetting(jobsAckWait)]
    }
}
