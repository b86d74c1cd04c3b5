#include "config.h"
void nm_config_defaults(struct nm_config *c) { (void)c; }
