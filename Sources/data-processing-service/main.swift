// data-processing-service: configuration -> runtime -> run (the logic lives in Sources/DataProcessingService).
import DataProcessingService
import Glibc

exit(await DataProcessingService.main())
