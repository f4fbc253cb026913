// auth-service: configuration -> runtime -> run (the logic lives in Sources/AuthService).
import AuthService
import Glibc

exit(await AuthService.main())
