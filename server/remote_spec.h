/* remote_spec.h - a daemon job's spec as ranks outside the daemon run it:
 * `traind run spec.json` on a node that sees the data dir (a shared
 * directory), with no database to resolve names in.
 *
 * data.train and data.val, dataset names in the stored spec, become inline
 * sources ({"format": "idx", "images": ABS, "labels": ABS}, ...) naming the
 * datasets' files by absolute path under the data dir, with their options
 * (a CSV's columns, an image folder's grayscale, a token source's
 * block_size, split and val_fraction); `init`, a checkpoint id, becomes
 * that checkpoint's model.safetensors. Everything else stays as submitted.
 * The datasets are the ones the job's row recorded at submission.
 */
#ifndef TRAIND_SERVER_REMOTE_SPEC_H
#define TRAIND_SERVER_REMOTE_SPEC_H

#include "storage/db.h"

/* The resolved spec as JSON text (malloc'ed), or NULL with an error naming
 * the field ("data.train: dataset 3: not found"). */
char *remote_spec_json(Db *db, const DbJob *job);

#endif
