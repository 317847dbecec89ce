/* The call log of the fake vendor libraries: one line per call, "<func> <key>=<value> ... -> <ret>",
 * appended with a single write() to a file opened O_APPEND for this line only, so lines of forked /
 * exiting processes and of concurrent threads are never lost or interleaved. Each fake defines
 * FAKE_LOG_ENV (the variable naming the file) before including this. */
#ifndef FAKE_LOG_H
#define FAKE_LOG_H
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    const char *path = getenv(FAKE_LOG_ENV);
    if (path == NULL || *path == '\0') {
        return;
    }
    char buf[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof buf - 2) {
        n = (int)(sizeof buf - 2);
    }
    buf[n++] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;
    close(fd);
}
#endif
