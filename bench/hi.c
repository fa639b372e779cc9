/*
 * The service every server in bench/compare runs: one line to the client
 * on stdout, then exit. Built static and without a C library, so its start
 * costs the same under every server and as little as a program's can:
 * what is measured is the server. (A static glibc program spends most of
 * its short life asking the CPU for its cache layout with cpuid, which
 * traps to the hypervisor on a virtual machine: two thirds of all the CPU
 * time of a run, the same under every server, which hid their own costs.)
 *
 *     cc -O2 -static -nostdlib -fno-stack-protector -o hi bench/hi.c
 */

static const char line[] = "hi\n";

#if defined(__x86_64__)
static long call3(long number, long a, long b, long c)
{
	long result;

	__asm__ volatile("syscall"
			 : "=a"(result)
			 : "a"(number), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return result;
}
#define SYS_WRITE 1
#define SYS_EXIT 60
#elif defined(__aarch64__)
static long call3(long number, long a, long b, long c)
{
	register long x8 __asm__("x8") = number;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;

	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
}
#define SYS_WRITE 64
#define SYS_EXIT 93
#else
#error "bench/hi.c knows the system calls of x86-64 and aarch64 Linux only"
#endif

void _start(void)
{
	long written = call3(SYS_WRITE, 1, (long)line, sizeof line - 1);

	call3(SYS_EXIT, written == sizeof line - 1 ? 0 : 1, 0, 0);
	for (;;) {
	}
}
