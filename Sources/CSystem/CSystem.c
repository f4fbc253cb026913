// The C shim is header-only; this file gives the target a translation unit.
#include "CSystem.h"
