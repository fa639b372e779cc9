/*
 * The client of bench/compare: opens connections to 127.0.0.1:PORT, reads
 * each to end of file and closes it, from THREADS threads at once, until
 * COUNT connections are done; prints connections per second and the
 * 50th and 99th percentile of connect-to-EOF latency in microseconds:
 *
 *     client PORT COUNT THREADS
 *     => 2143.2 412 1130
 *
 * With `line` after THREADS, each connection is closed once its first
 * line has come (a service that greets and waits for its client), and
 * the latency is connect-to-greeting; what the server does once the
 * client has gone only shows in the rate.
 *
 * A connection that fails, or ends without the greeting, is counted and
 * reported on stderr; the run exits 1 if any did.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in server;
static int first_line_only;
static long count;
static atomic_long next;
static atomic_long failed;
static double *latencies;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int one_connection(void)
{
	char buffer[64];
	ssize_t got, total = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) {
		close(fd);
		return -1;
	}
	while ((got = read(fd, buffer, sizeof buffer)) > 0) {
		total += got;
		if (first_line_only && memchr(buffer, '\n', (size_t)got))
			break;
	}
	close(fd);
	if (first_line_only)
		return got > 0 ? 0 : -1;
	return got == 0 && total > 0 ? 0 : -1;
}

static void *worker(void *unused)
{
	long at;

	(void)unused;
	while ((at = atomic_fetch_add(&next, 1)) < count) {
		double start = now_us();

		if (one_connection() < 0)
			atomic_fetch_add(&failed, 1);
		latencies[at] = now_us() - start;
	}
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	long threads;
	pthread_t *ids;
	double start, elapsed;

	if (argc == 5 && strcmp(argv[4], "line") == 0)
		first_line_only = 1;
	else if (argc != 4) {
		fprintf(stderr, "usage: client PORT COUNT THREADS [line]\n");
		return 2;
	}
	memset(&server, 0, sizeof server);
	server.sin_family = AF_INET;
	server.sin_port = htons((unsigned short)atoi(argv[1]));
	server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	count = atol(argv[2]);
	threads = atol(argv[3]);
	if (count < 1 || threads < 1) {
		fprintf(stderr, "client: COUNT and THREADS must be at least 1\n");
		return 2;
	}
	latencies = calloc((size_t)count, sizeof *latencies);
	ids = calloc((size_t)threads, sizeof *ids);
	if (!latencies || !ids)
		return 2;
	start = now_us();
	for (long i = 0; i < threads; i++)
		pthread_create(&ids[i], NULL, worker, NULL);
	for (long i = 0; i < threads; i++)
		pthread_join(ids[i], NULL);
	elapsed = now_us() - start;
	qsort(latencies, (size_t)count, sizeof *latencies, by_value);
	printf("%.1f %.0f %.0f\n", count / (elapsed / 1e6),
	       latencies[(count - 1) / 2], latencies[(count - 1) * 99 / 100]);
	if (atomic_load(&failed) > 0) {
		fprintf(stderr, "client: %ld of %ld connections failed\n",
			atomic_load(&failed), count);
		return 1;
	}
	return 0;
}
