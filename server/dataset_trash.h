/* dataset_trash.h - a deleted dataset's files, removed in the background.
 *
 * DELETE /v1/datasets/{id} moves the dataset's directory aside in one
 * rename and deletes its row (db_dataset_delete); removing the files, an
 * image folder of millions of them, takes minutes, which neither an HTTP
 * thread (every connection on it would wait) nor the ingest pool (uploads'
 * checks would wait behind it) may spend. Each removal has a detached
 * thread of its own; a daemon that stops mid-removal leaves the rest
 * aside, and the next start's dataset_trash_sweep removes it the same way,
 * while the daemon serves.
 */
#ifndef TRAIND_SERVER_DATASET_TRASH_H
#define TRAIND_SERVER_DATASET_TRASH_H

#include "storage/db.h"

/* Removes the directory at path (moved aside) on a thread of its own, or
 * here when no thread can start; a failure is logged. */
void dataset_trash_remove(const char *path);

/* At start: every directory deletes left aside, removed as above. */
void dataset_trash_sweep(Db *db);

#endif
