/* How many CPUs this process may use: its affinity mask, capped by a cgroup CPU quota
 * (taskset, Slurm, docker --cpus and Kubernetes limits set one or the other). */
#include "codec_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads the first line of root/dir/name into buf. @return 0 on success. */
static int read_line(const char *root, const char *dir, const char *name, char *buf, size_t cap)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s%s/%s", root, dir, name) >= sizeof(path))
		return -1;
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char *r = fgets(buf, (int)cap, f);
	fclose(f);
	return r ? 0 : -1;
}

/* ceil(quota / period), or 0 when there is no limit or it cannot be read. */
static unsigned quota_cpus(long long quota, long long period)
{
	if (quota <= 0 || period <= 0)
		return 0;
	long long n = (quota + period - 1) / period;
	return n > 4096 ? 4096 : (unsigned)n;
}

/* The cgroup path of this process for the v1 controller `ctl` ("cpu"), or for v2 when ctl is
 * NULL, from root/proc/self/cgroup. @return 0 on success. */
static int cgroup_path(const char *root, const char *ctl, char *out, size_t cap)
{
	char path[4096], line[4096];
	snprintf(path, sizeof(path), "%s/proc/self/cgroup", root);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	int found = -1;
	while (found && fgets(line, sizeof(line), f)) {
		/* "hierarchy-id:controller-list:path" */
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = '\0';
		*c2 = '\0';
		char *ctls = c1 + 1, *p = c2 + 1;
		p[strcspn(p, "\n")] = '\0';
		int match = 0;
		if (!ctl) {
			match = strcmp(line, "0") == 0 && *ctls == '\0';
		} else {
			for (char *s = strtok(ctls, ","); s && !match; s = strtok(NULL, ","))
				match = strcmp(s, ctl) == 0;
		}
		if (match && strlen(p) < cap) {
			strcpy(out, p);
			found = 0;
		}
	}
	fclose(f);
	return found;
}

unsigned alcm_cpu_quota(const char *root)
{
	char path[4096], buf[128];
	/* cgroup v2: cpu.max is "max 100000" or "QUOTA PERIOD", along the path up to the root
	 * (a parent's limit binds too); the tightest wins. */
	unsigned best = 0;
	if (cgroup_path(root, NULL, path, sizeof(path)) == 0) {
		char dir[4200];
		for (;;) {
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s", path);
			long long q = 0, p = 0;
			if (read_line(root, dir, "cpu.max", buf, sizeof(buf)) == 0 &&
			    sscanf(buf, "%lld %lld", &q, &p) == 2) {
				unsigned n = quota_cpus(q, p);
				if (n && (!best || n < best))
					best = n;
			}
			char *slash = strrchr(path, '/');
			if (!slash || slash == path)
				break;
			*slash = '\0';
		}
		if (best)
			return best;
	}
	/* cgroup v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us. */
	static const char *const mounts[] = {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"};
	if (cgroup_path(root, "cpu", path, sizeof(path)) == 0)
		for (size_t m = 0; m < sizeof(mounts) / sizeof(mounts[0]); m++) {
			char dir[4200], pb[128];
			snprintf(dir, sizeof(dir), "%s%s", mounts[m], strcmp(path, "/") ? path : "");
			if (read_line(root, dir, "cpu.cfs_quota_us", buf, sizeof(buf)) == 0 &&
			    read_line(root, dir, "cpu.cfs_period_us", pb, sizeof(pb)) == 0)
				return quota_cpus(atoll(buf), atoll(pb));
		}
	return 0;
}

unsigned alcm_cpu_count(void)
{
	unsigned n = 0;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = (unsigned)CPU_COUNT(&set);
	if (n == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1;
	}
	unsigned q = alcm_cpu_quota("");
	return q && q < n ? q : n;
}
