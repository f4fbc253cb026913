// Placeholder while the service is being written.
public enum AnalyticsService {
    /// Process exit status.
    public static func main() async -> Int32 { 1 }
}
