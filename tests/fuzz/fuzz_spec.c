/* fuzz_spec.c - the job-spec parser (core/spec.c) on arbitrary bytes.
 *
 * The input is the JSON text as a client would POST it. A spec either parses
 * or fails with a message; parsing never trains, so nothing here allocates
 * more than the text asks for. tests/fuzz/spec.dict gives libFuzzer the
 * field and layer names.
 */
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"
#include "tests/fuzz/fuzz_support.h"

/* The one call to adapt when the parser's signature changes. */
static bool parse_one(const uint8_t *data, size_t size) {
    JobSpec *spec = job_spec_parse((const char *)data, size);
    job_spec_free(spec);
    return spec != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_begin();
    bool ok = parse_one(data, size);
    fuzz_end("job_spec_parse", !ok);
    return 0;
}
