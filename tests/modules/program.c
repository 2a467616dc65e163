/* A program, not a library: built as a position-independent executable, which is ET_DYN like a
   shared library, for the hostile corpus (tests/test_hostile_corpus.cpp). */
int main(void) { return 0; }
