/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What every benchmark program here needs: a monotonic clock in seconds and a comparison for
 * qsort() of run figures (medians). Header-only, benchmarks only.
 */
#ifndef NM_BENCH_UTIL_H
#define NM_BENCH_UTIL_H

#include <time.h>

static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

#endif
