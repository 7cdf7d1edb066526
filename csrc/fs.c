/* stub: replaced by the real unit */
#include "favcrm.h"
int fav_fs_open(lua_State *L) { (void)L; return 0; }
