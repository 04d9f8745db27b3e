// doctest's main for qtts_tests. Suites: everything CPU by default; TEST_SUITE("gpu") cases need a GPU.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
