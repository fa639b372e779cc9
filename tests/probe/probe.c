/*
 * probe: reports, one "key=value" line each on stdout, everything warden's
 * spawn is supposed to have set up in a new process (ids, groups, root,
 * limits, no_new_privs, the parent-death signal, signals, descriptors,
 * environment), then exits 0.
 *
 *   probe            report and exit
 *   probe exit N     exit with status N at once
 *   probe sleep      report, then wait for a signal
 *   probe alloc N    try to allocate and touch N bytes; exit 0 if that
 *                    worked, 83 (Dovecot's out-of-memory status) if not
 *   probe setegid N  switch the effective gid to N and back, reporting
 *                    each attempt, then report as usual
 *   probe notify M   send M as one datagram to $NOTIFY_SOCKET (an abstract
 *                    address when it starts with '@'), report "notify=ok"
 *                    or why not, then wait for signals, sending M again on
 *                    each SIGUSR1
 *   probe stubborn M as notify, ignoring SIGINT and SIGTERM: a process
 *                    that will not exit when asked
 *
 * It is linked statically, so it runs inside an empty chroot. It is written
 * against libc alone so that what it reports is exactly what the kernel
 * says, with no runtime of its own in between.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

static void print_limit(const char *name, int resource)
{
	struct rlimit limit;
	if (getrlimit(resource, &limit) != 0) {
		printf("%s=error\n", name);
		return;
	}
	if (limit.rlim_cur == RLIM_INFINITY)
		printf("%s=unlimited", name);
	else
		printf("%s=%llu", name, (unsigned long long)limit.rlim_cur);
	if (limit.rlim_max == RLIM_INFINITY)
		printf(" unlimited\n");
	else
		printf(" %llu\n", (unsigned long long)limit.rlim_max);
}

static void print_fd(int fd)
{
	struct stat st;
	if (fcntl(fd, F_GETFD) == -1 || fstat(fd, &st) != 0)
		return;
	printf("fd.%d=", fd);
	if (S_ISSOCK(st.st_mode)) {
		struct sockaddr_storage address;
		socklen_t length = sizeof(address);
		int type = 0, listening = 0;
		socklen_t size = sizeof(int);
		getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size);
		size = sizeof(int);
		getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size);
		getsockname(fd, (struct sockaddr *)&address, &length);
		printf("socket %s %s%s\n",
		       address.ss_family == AF_UNIX ? "unix" :
		       address.ss_family == AF_INET ? "inet" :
		       address.ss_family == AF_INET6 ? "inet6" : "other",
		       type == SOCK_STREAM ? "stream" :
		       type == SOCK_DGRAM ? "dgram" :
		       type == SOCK_SEQPACKET ? "seqpacket" : "other",
		       listening ? " listening" : "");
	} else if (S_ISFIFO(st.st_mode)) {
		printf("fifo\n");
	} else if (S_ISCHR(st.st_mode)) {
		printf("chr\n");
	} else if (S_ISDIR(st.st_mode)) {
		printf("dir\n");
	} else if (S_ISREG(st.st_mode)) {
		printf("file\n");
	} else {
		printf("other\n");
	}
}

static void report(void)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	gid_t groups[NGROUPS_MAX];
	char cwd[PATH_MAX];
	struct dirent **entries;
	sigset_t mask;
	struct sigaction pipe_action;
	int count, i, death_signal = 0;

	printf("pid=%d\n", (int)getpid());
	getresuid(&ruid, &euid, &suid);
	getresgid(&rgid, &egid, &sgid);
	printf("uid=%u %u %u\n", ruid, euid, suid);
	printf("gid=%u %u %u\n", rgid, egid, sgid);

	count = getgroups(NGROUPS_MAX, groups);
	printf("groups=");
	for (i = 0; i < count; i++)
		printf(i ? " %u" : "%u", groups[i]);
	printf("\n");

	printf("cwd=%s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
	count = scandir("/", &entries, NULL, alphasort);
	printf("root=");
	for (i = 0; i < count; i++) {
		if (strcmp(entries[i]->d_name, ".") && strcmp(entries[i]->d_name, ".."))
			printf("%s,", entries[i]->d_name);
		free(entries[i]);
	}
	if (count >= 0)
		free(entries);
	printf("\n");

	print_limit("rlimit_as", RLIMIT_AS);
	print_limit("rlimit_data", RLIMIT_DATA);
	printf("no_new_privs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	if (prctl(PR_GET_PDEATHSIG, &death_signal, 0, 0, 0) == 0)
		printf("pdeathsig=%d\n", death_signal);
	else
		printf("pdeathsig=error\n");

	sigprocmask(SIG_SETMASK, NULL, &mask);
	count = 0;
	for (i = 1; i < NSIG; i++)
		if (sigismember(&mask, i) == 1)
			count++;
	printf("blocked_signals=%d\n", count);
	count = 0;
	for (i = 1; i < NSIG; i++)
		if (sigaction(i, NULL, &pipe_action) == 0 && pipe_action.sa_handler == SIG_IGN)
			count++;
	printf("ignored_signals=%d\n", count);
	sigaction(SIGPIPE, NULL, &pipe_action);
	printf("sigpipe=%s\n", pipe_action.sa_handler == SIG_IGN ? "ignored" :
	       pipe_action.sa_handler == SIG_DFL ? "default" : "handled");

	for (i = 0; i < 1024; i++)
		print_fd(i);
	for (i = 0; environ[i] != NULL; i++)
		printf("env.%s\n", environ[i]);
	fflush(stdout);
}

static volatile sig_atomic_t resend;

static void on_usr1(int signal)
{
	(void)signal;
	resend = 1;
}

/* Sends `message` to $NOTIFY_SOCKET and says how that went. */
static void notify(const char *message)
{
	const char *target = getenv("NOTIFY_SOCKET");
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	socklen_t length;
	int fd;

	if (target == NULL || strlen(target) >= sizeof(address.sun_path)) {
		printf("notify=no NOTIFY_SOCKET\n");
		return;
	}
	strcpy(address.sun_path, target);
	if (target[0] == '@')
		address.sun_path[0] = '\0';
	length = offsetof(struct sockaddr_un, sun_path) + strlen(target);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, message, strlen(message), 0,
			     (struct sockaddr *)&address, length) < 0)
		printf("notify=%s\n", strerror(errno));
	else
		printf("notify=ok\n");
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "exit") == 0)
		_exit(atoi(argv[2]));
	if (argc == 3 && strcmp(argv[1], "alloc") == 0) {
		size_t size = strtoull(argv[2], NULL, 10);
		char *memory = malloc(size);
		if (memory == NULL)
			_exit(83);
		memset(memory, 1, size);
		_exit(0);
	}
	if (argc == 3 && strcmp(argv[1], "setegid") == 0) {
		gid_t primary = getegid();
		gid_t wanted = (gid_t)strtoul(argv[2], NULL, 10);
		printf("setegid=%s\n", setegid(wanted) == 0 ? "ok" : strerror(errno));
		printf("egid_switched=%u\n", getegid());
		printf("setegid_back=%s\n", setegid(primary) == 0 ? "ok" : strerror(errno));
	}
	if (argc == 3 && (strcmp(argv[1], "notify") == 0 ||
			  strcmp(argv[1], "stubborn") == 0)) {
		sigset_t usr1, waiting;

		if (strcmp(argv[1], "stubborn") == 0) {
			signal(SIGINT, SIG_IGN);
			signal(SIGTERM, SIG_IGN);
		}
		/* SIGUSR1 is let in only while waiting, so none is missed
		 * between sending and waiting again. */
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		sigprocmask(SIG_BLOCK, &usr1, &waiting);
		sigdelset(&waiting, SIGUSR1);
		signal(SIGUSR1, on_usr1);
		for (;;) {
			notify(argv[2]);
			fflush(stdout);
			resend = 0;
			while (!resend)
				sigsuspend(&waiting);
		}
	}
	report();
	if (argc == 2 && strcmp(argv[1], "sleep") == 0)
		for (;;)
			pause();
	return 0;
}
