/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The process' signal policy, in one place.
 *
 * A process-directed signal goes to any thread that does not block it. Libraries' threads are not
 * written for that: librdkafka 2.0.2's mock cluster thread treats an EINTR from its poll() as
 * fatal, so the embedded broker died on the first frames net_tap announced with its per-frame
 * real-time signal (F_SETSIG on the tap fd), and every record was lost. So:
 *
 *  - nm_signals_block_all(), first thing in main(): every signal is blocked, and every thread
 *    created from then on inherits that mask: EAL's control, interrupt and telemetry threads,
 *    EAL's lcore threads, librdkafka's threads and the mock cluster's, and whatever those create
 *    later (librdkafka's broker threads, telemetry's per-client threads);
 *  - nm_signals_main(), once every thread exists: the main thread takes SIGINT and SIGTERM
 *    (drain and stop) and SIGHUP (re-read the config: the handler only raises a flag, the main
 *    lcore's loop does the reload, see reload.c) through sigaction with SA_RESTART; SIGPIPE is
 * ignored, so the console writer does not kill the engine when its reader goes away (write()
 * returns EPIPE instead). Nothing else is unblocked there: the main thread sleeps and writes to the
 * console, and a stream of real-time signals would interrupt both;
 *  - nm_signals_worker(), first thing on each RX lcore: every signal except those four is
 *    unblocked. PMDs that signal (net_tap) need some thread to take their signal, and the RX
 *    lcores are the ones that never sleep in a system call: the handler costs them a few hundred
 *    nanoseconds and interrupts nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "app.h"

/* The handler's only way to the app; set once before the handlers are installed. */
static struct nm_app *sig_app;

static void
on_signal(int sig)
{
	(void)sig;
	if (sig_app == NULL)
		return;
	/*
	 * A second signal -- or the first once the Kafka drain has begun (offline runs get there
	 * without one) -- cuts the drain short: what is not acknowledged goes to the spool.
	 */
	if (sig_app->quit || sig_app->draining)
		sig_app->drain_abort = true;
	sig_app->quit = true;
}

/* SIGHUP: systemctl reload. Async-signal-safe: a flag the main lcore's loop reads. */
static void
on_hup(int sig)
{
	(void)sig;
	if (sig_app != NULL)
		nm_reload_request(sig_app);
}

/* The signals the main thread owns. */
static void
main_set(sigset_t *s)
{
	sigemptyset(s);
	sigaddset(s, SIGINT);
	sigaddset(s, SIGTERM);
	sigaddset(s, SIGHUP);
}

int
nm_signals_block_all(void)
{
	sigset_t all;
	int ret;

	sigfillset(&all);
	ret = pthread_sigmask(SIG_BLOCK, &all, NULL);
	return -ret;
}

int
nm_signals_main(struct nm_app *app)
{
	struct sigaction sa;
	sigset_t own;
	int ret;

	sig_app = app;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
		return -errno;
	sa.sa_handler = on_hup;
	if (sigaction(SIGHUP, &sa, NULL) != 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) != 0)
		return -errno;
	main_set(&own);
	ret = pthread_sigmask(SIG_UNBLOCK, &own, NULL);
	return -ret;
}

int
nm_signals_worker(void)
{
	sigset_t s;
	int ret;

	sigfillset(&s);
	sigdelset(&s, SIGINT);
	sigdelset(&s, SIGTERM);
	sigdelset(&s, SIGHUP);
	sigdelset(&s, SIGPIPE);
	ret = pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	return -ret;
}
