// analytics-service: the logic lives in Sources/AnalyticsService.
import AnalyticsService
import Glibc

exit(await AnalyticsService.main())
