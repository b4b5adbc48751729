/* tmp_db.h - the daemon's storage for a test: a database in a fresh
 * temporary data dir, with its metric writer running; closed and the dir
 * removed after. Fails the current Criterion test when it cannot be made.
 */
#ifndef TRAIND_TESTS_TMP_DB_H
#define TRAIND_TESTS_TMP_DB_H

#include "storage/db.h"

typedef struct {
    char dir[256];
    Db *db;
    MetricWriter *mw;
} TmpDb;

/* The dir is /tmp/traind-<tag>-XXXXXX. */
void tmp_db_open(TmpDb *t, const char *tag);
void tmp_db_close(TmpDb *t);
/* A database alone, no metric writer, in a fresh /tmp/traind-<tag>-XXXXXX
 * written into dir: for tests that close and reopen it, or start writers
 * of their own. db_close it, then tmp_dir_remove(dir). */
Db *tmp_db_open_alone(char *dir, size_t size, const char *tag);

#endif
