// analytics-service: configuration -> runtime -> run (the logic lives in Sources/AnalyticsService).
import AnalyticsService
import Glibc

exit(await AnalyticsService.main())
