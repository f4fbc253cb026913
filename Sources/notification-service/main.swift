// notification-service: the logic lives in Sources/NotificationService.
import NotificationService
import Glibc

exit(await NotificationService.main())
