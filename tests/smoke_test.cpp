#include <gtest/gtest.h>

#include "test_util.h"

TEST(Cli, NoSubcommandIsAnError) {
  auto r = razor::test::run_cli({});
  EXPECT_NE(r.rc, 0);
}
