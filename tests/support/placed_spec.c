/* placed_spec.c - see placed_spec.h. */
#include "tests/support/placed_spec.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

JobSpec *placed_spec(const char *fields) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"name\": \"placed\", \"data\": {\"train\": {\"format\": \"csv\", \"path\": "
             "\"x.csv\"}}, \"model\": [{\"type\": \"Linear\", \"in_features\": 2, "
             "\"out_features\": 2}], \"loss\": {\"type\": \"MSELoss\"}, \"optimizer\": {\"type\": "
             "\"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 8%s}",
             fields);
    JobSpec *s = job_spec_parse(text, strlen(text));
    cr_assert_not_null(s, "%s: %s", fields, error_get());
    return s;
}
