/*
 * sw_log.h - leveled logging to stderr, one line per call.
 *
 * Format: "<prog>: <level>: message".  Thread-safe (one fprintf per line).
 * The level is process-wide; set it once at start-up.
 */
#ifndef SW_LOG_H
#define SW_LOG_H

enum sw_log_level { SW_LOG_ERROR, SW_LOG_WARN, SW_LOG_INFO, SW_LOG_DEBUG };

void sw_log_init(const char *prog, enum sw_log_level level);
void sw_log(enum sw_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define sw_error(...) sw_log(SW_LOG_ERROR, __VA_ARGS__)
#define sw_warn(...)  sw_log(SW_LOG_WARN, __VA_ARGS__)
#define sw_info(...)  sw_log(SW_LOG_INFO, __VA_ARGS__)
#define sw_debug(...) sw_log(SW_LOG_DEBUG, __VA_ARGS__)

#endif
