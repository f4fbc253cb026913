// data-processing-service: the logic lives in Sources/DataProcessingService.
import DataProcessingService
import Glibc

exit(await DataProcessingService.main())
