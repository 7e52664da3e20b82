// GLPK's C API (Debian libglpk-dev installs /usr/include/glpk.h and libglpk.so).
#include <glpk.h>
