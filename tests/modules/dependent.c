/* Linked against the "other" module and using one of its symbols: while this library is loaded,
   the dynamic loader keeps that module in the process. */
extern const void* const relib_export_name;
const void* dependent_function(void) { return relib_export_name; }
