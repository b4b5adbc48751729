/* report.h - `traind run --report URL`: a rank of an attempt run outside the
 * daemon (server/executor.h) reports to it over HTTP, with the attempt's
 * token (--token-file, read once, never printed).
 *
 * Rank 0 alone reports (the Trainer calls its callbacks on rank 0 only):
 * metrics, log lines (numbered from 0) and progress are queued and sent in
 * batches by a background thread (POST .../report) at least every second,
 * and at each checkpoint and at the end; checkpoints are uploaded after
 * they are written to --out (PUT .../checkpoints/{epoch}); the end is
 * POST .../end. A request (job/attempt_http.h) that gets no answer, or a 5xx, is sent again
 * after 0.2 s, doubling to 5 s, for up to the report timeout; a 4xx is
 * never retried: 401 (a wrong token) or 409 stale_attempt (the attempt is
 * over) stops the run with that error, no end reported; another 4xx (a
 * checkpoint refused: 409 conflict, 429 quota) stops it too, its end
 * reported failed with the daemon's reason. A reply "cancel": true stops it as a cancel
 * (the trainer's cancel flag: every rank stops at the same step); with
 * "preempt": true too, the job is preempted: rank 0 then uploads a partial
 * checkpoint where the ranks stopped, from which the job resumes later.
 */
#ifndef TRAIND_JOB_REPORT_H
#define TRAIND_JOB_REPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Reporter Reporter;

typedef struct {
    const char *url;        /* the daemon's base URL: "http://10.0.0.1:8080" */
    int64_t job;
    int attempt;
    const char *token_file; /* its one line is the token */
    double timeout_s;       /* how long a request is retried (default 300) */
} ReportConfig;

/* Reads the token and starts the sending thread; cancel is set on a
 * "cancel": true reply or a refusal (report_failure says which). NULL with
 * an error. */
Reporter *report_open(const ReportConfig *c, atomic_int *cancel);

/* Queued, sent by the thread; they return at once. */
void report_metric(Reporter *r, const char *name, int64_t step, int epoch, double value);
void report_log(Reporter *r, const char *line);
void report_progress(Reporter *r, int epoch, int64_t step, double samples_per_s);

/* Sends everything queued before the call and waits for it. 0, or -1 with
 * the error that stopped the reports. */
int report_flush(Reporter *r);

/* Uploads checkpoint directory dir (model.safetensors,
 * trainer.safetensors) of epoch after step, after report_flush; partial:
 * one taken mid-epoch, where a preempted run stopped. 0, or -1 with an
 * error; the reports stop then, unless it was a partial one refused for
 * itself (over the quota, a full disk), which the run can do without. */
int report_checkpoint(Reporter *r, const char *dir, int epoch, int64_t step, bool partial);
/* Whether a reply said the job is preempted ("preempt": true). */
bool report_preempted(Reporter *r);

/* Where the attempt starts (GET .../resume): 1 with the newest checkpoint
 * downloaded into dir_out (<out_dir>/resume-attempt-<n>, size bytes), 0
 * when there is none (a fresh start), -1 with an error. */
int report_resume(Reporter *r, const char *out_dir, char *dir_out, size_t size);

/* Flushes, then tells the daemon how the attempt ended: state
 * "succeeded", "failed" or "cancelled", error NULL or the message; after a
 * failure of the reports that was not the attempt's end, tells it still
 * (for 20 s at most). 0, or -1 with an error. */
int report_end(Reporter *r, const char *state, const char *error);

/* The message of the refusal that stopped the reports (a 401, a 409, no
 * answer within the timeout), or NULL when none did. */
const char *report_failure(Reporter *r);
/* Whether that failure was the daemon saying the attempt is over (401: its
 * token no longer works; 409 stale_attempt: another attempt is the job's,
 * or none): then no end of it is taken either. */
bool report_attempt_over(Reporter *r);

/* Stops the thread (what is still queued is dropped: report_end flushes)
 * and frees. NULL is fine. */
void report_close(Reporter *r);

#endif
