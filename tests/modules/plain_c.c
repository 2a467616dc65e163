/* A plain C shared library: valid ELF, but not a relib module. */
int plain_c_function(int x) { return x + 1; }
