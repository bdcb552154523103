/* relman (obstacle 2): dgaus8.c includes <f2c/f2c.h>; Debian installs /usr/include/f2c.h. */
#include <f2c.h>
