/* A plain library that the origin module finds next to itself, through RUNPATH $ORIGIN. */
int origin_dep_value(void) { return 42; }
