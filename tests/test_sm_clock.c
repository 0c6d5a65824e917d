/* test_sm_clock.c — the SM clock probe's failure path, which runs anywhere:
 * without a usable GPU it returns a CUDA error status naming the probe and
 * leaves *mhz at 0, never a made-up clock. (With a GPU, gpu_sm_clock checks
 * the clock itself.) */
#include "check.h"
#include "device.h"
#include "error.h"
#include "sm_clock.h"

#include <string.h>

int main(void) {
  fkm_device dev;
  fkm_device_query(&dev);
  double mhz = -1;
  const fkm_status st = fkm_sm_clock_mhz(0, &mhz);
  if (dev.present) {
    CHECK_MSG(st == FKM_OK && mhz > 0, "with %s: status %d, %g MHz: %s", dev.name, (int)st, mhz, fkm_last_error());
  } else {
    CHECK(st == FKM_ERR_CUDA);
    CHECK(mhz == 0);
    CHECK_MSG(strstr(fkm_last_error(), "SM clock probe") != NULL, "error text: %s", fkm_last_error());
    printf("without a GPU: %s\n", fkm_last_error());
  }
  return check_exit("test_sm_clock");
}
