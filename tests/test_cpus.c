/* The default thread count: the affinity mask, capped by a cgroup CPU quota. */
#include "codec_internal.h"
#include "testutil.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes root/rel (creating its directories) with the given text. */
static void put(const char *root, const char *rel, const char *text)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *s = strchr(path + strlen(root) + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		mkdir(path, 0755);
		*s = '/';
	}
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

static const char *fresh_root(const char *name)
{
	static char root[4096];
	snprintf(root, sizeof(root), "%s", tu_path(name));
	mkdir(root, 0755);
	return root;
}

static void test_cgroup_v2(void **state)
{
	(void)state;
	const char *r = fresh_root("cg2");
	put(r, "proc/self/cgroup", "0::/slurm/job7/step0\n");
	/* No file: no quota. */
	assert_int_equal(alcm_cpu_quota(r), 0);
	put(r, "sys/fs/cgroup/slurm/job7/step0/cpu.max", "max 100000\n");
	assert_int_equal(alcm_cpu_quota(r), 0);
	/* 1.5 CPUs round up to 2; a parent's tighter limit wins. */
	put(r, "sys/fs/cgroup/slurm/job7/step0/cpu.max", "150000 100000\n");
	assert_int_equal(alcm_cpu_quota(r), 2);
	put(r, "sys/fs/cgroup/slurm/cpu.max", "50000 100000\n");
	assert_int_equal(alcm_cpu_quota(r), 1);
	put(r, "sys/fs/cgroup/slurm/cpu.max", "400000 100000\n");
	assert_int_equal(alcm_cpu_quota(r), 2);
}

static void test_cgroup_v1(void **state)
{
	(void)state;
	const char *r = fresh_root("cg1");
	put(r, "proc/self/cgroup", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n");
	put(r, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
	put(r, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
	assert_int_equal(alcm_cpu_quota(r), 0);
	put(r, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n");
	assert_int_equal(alcm_cpu_quota(r), 3);
	/* The root cgroup ("/") maps to the mount point itself. */
	const char *r2 = fresh_root("cg1root");
	put(r2, "proc/self/cgroup", "3:cpu:/\n");
	put(r2, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "250000\n");
	put(r2, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
	assert_int_equal(alcm_cpu_quota(r2), 3);
	/* Garbage is no quota, not a crash. */
	put(r2, "proc/self/cgroup", "nonsense\n::\n");
	assert_int_equal(alcm_cpu_quota(r2), 0);
}

/* `taskset -c 0` as the library sees it: one CPU, so one thread by default. */
static void test_affinity(void **state)
{
	(void)state;
	cpu_set_t all, one;
	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	unsigned n = alcm_cpu_count();
	assert_true(n >= 1 && n <= (unsigned)CPU_COUNT(&all));
	int first = 0;
	while (!CPU_ISSET(first, &all))
		first++;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	assert_int_equal(alcm_cpu_count(), 1);
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
	assert_int_equal(alcm_cpu_count(), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cgroup_v2),
		cmocka_unit_test(test_cgroup_v1),
		cmocka_unit_test(test_affinity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
