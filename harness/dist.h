/* dist.h — `flashkm dist`: data-parallel Lloyd over several GPUs through NCCL.
 *
 * One process per GPU. Each rank owns a contiguous slice of every problem's
 * points, assigns it with FlashAssign, sums it per cluster in exact 64-bit
 * fixed point (kernels/fixed_point.h), and one ncclAllReduce of the integer
 * sums and counts per iteration gives every rank the same totals, so every
 * rank computes the same centroids and the same convergence scalar — bitwise
 * the same as one GPU, since integer sums do not depend on how the points are
 * split.
 *
 * Bootstrap: on one host, `--gpus LIST` forks one rank per GPU and supervises
 * them (one dead rank ends the others, with its exit status in the message);
 * across hosts every rank is started by the user or a launcher with `--rank`,
 * `--nranks` and an `--id-file` on a shared path (rank 0 writes the NCCL id,
 * the others wait for it); MPI and Slurm launchers' rank variables are read
 * when `--rank` is absent. NCCL_NVLS_ENABLE is forced to 0 (NVLink multicast
 * can take a shared machine's GPUs out of service). Collectives are
 * non-blocking with a timeout (--timeout, default 300 s): a rank that stops
 * answering ends the others with a message instead of a hang. */
#ifndef FKM_DIST_H
#define FKM_DIST_H

#ifdef __cplusplus
extern "C" {
#endif

/* The `dist` command (argv after "dist"); returns the exit status. */
int fkm_dist_command(int argc, char **argv, int full_argc, char **full_argv);

#ifdef __cplusplus
}
#endif
#endif
