/* history_chunks.h - one metric series' history, kept as chunks of JSON.
 *
 * A page of a series (?name=loss&after=A&limit=N) is a run of points in
 * step order, and the points of a finished job, or those a running
 * attempt has committed below its newest, never change. So the route
 * keeps each series cut at fixed step boundaries (HISTORY_CHUNK_STEPS),
 * every point of a chunk already written as the JSON the page lists, and
 * answers any page, wherever its `after` falls, by copying a slice of one
 * or a few chunks: no SQLite, no number formatting. A chunk is kept once
 * it is whole: the job has ended, or the series already has a point past
 * it (the metric writer commits a series in step order). Of the newest,
 * still growing chunk of a running job, SQLite gives the points a page
 * needs each time (a poll for the last few points reads only those).
 *
 * The chunks live in a ReplyCache (bounded in bytes, least recently used
 * out first), keyed by job, attempt, name and chunk: a resumed attempt
 * deletes the rows past its checkpoint when it starts and so is another
 * series, and only a new daemon, whose cache starts empty, resumes one.
 */
#ifndef TRAIND_SERVER_HISTORY_CHUNKS_H
#define TRAIND_SERVER_HISTORY_CHUNKS_H

#include <stdbool.h>
#include <stdint.h>

#include "server/reply_cache.h"
#include "server/text.h"
#include "storage/db.h"

#define HISTORY_CHUNK_STEPS 8192

/* The series a page is cut from. quoted: name as a JSON string. final:
 * the job has ended (every chunk is whole). */
typedef struct {
    ReplyCache *cache;
    Db *db;
    int64_t job;
    int attempt;
    uint64_t generation; /* Api's history_generation, read before any row */
    bool final;
    const char *name, *quoted;
} HistorySeries;

/* One point as a page lists it, {"name":...,"step":...,"epoch":...,
 * "value":...,"wall_time":...}, after a comma when `comma`. */
void history_point_text(Text *t, const char *quoted, const DbMetric *m, bool comma);

/* Appends the page's points (steps > after, every one when after < 0, at
 * most limit) to t, comma separated, and gives their count and the step of
 * the last one: DB_OK or a DbStatus with error_get() set. What the chunks
 * cannot give comes from SQLite: the running job's newest chunk, a chunk
 * the page wants little of and that is not kept, more points below step
 * HISTORY_CHUNK_STEPS than a chunk holds (steps below 0), steps or an
 * `after` beyond INT64_MAX / 4. */
int history_chunks_page(const HistorySeries *s, int64_t after, int64_t limit, Text *t,
                        int64_t *count, int64_t *last_step);

/* Drops job's chunks from the cache: its points past a checkpoint were
 * deleted (a rerun of its attempt resumes there) and come again. */
void history_chunks_forget(ReplyCache *cache, int64_t job);

#endif
