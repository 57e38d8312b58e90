#include "CRNMVersion.h"
#ifndef RNM_VERSION
#define RNM_VERSION "0.0.0"
#endif
const char *rnm_version(void) { return RNM_VERSION; }
