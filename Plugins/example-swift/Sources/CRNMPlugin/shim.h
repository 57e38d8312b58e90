#include <rnm_plugin.h>
