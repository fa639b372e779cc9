/*
 * The service every server in bench/compare runs: one line to the client
 * on stdout, then exit. Built static, so its start costs the same under
 * every server.
 */
#include <unistd.h>

int main(void)
{
	static const char line[] = "hi\n";

	return write(1, line, sizeof line - 1) == sizeof line - 1 ? 0 : 1;
}
