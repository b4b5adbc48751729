/* fuzz_slurm.c - what traind reads of Slurm (server/slurm.c): a line of
 * `scontrol show job -o`, whose words a job's name or a node's paths may
 * add to, and a --slurm-config file.
 *
 * Byte 0's low bit picks the reader, the rest is the line or the file.
 * A line parsed has a JobState, its phase slurm_phase's, and a reason
 * only while pending; one refused has a message. A file loaded leaves
 * every field a string of its array and gpus_per_node in [0, 1024]; one
 * refused names the file; a line of more than SLURM_CONFIG_LINE_MAX bytes
 * is always refused (read as two, its value would be cut short and taken).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/slurm.h"
#include "tests/fuzz/fuzz_support.h"

#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))

static void scontrol(const uint8_t *data, size_t size) {
    char *line = malloc(size + 1);
    if (!line) return;
    memcpy(line, data, size);
    line[size] = '\0';
    SlurmJobState st;
    fuzz_begin();
    int rc = slurm_parse_scontrol(line, &st);
    fuzz_end("slurm_parse_scontrol", rc != 0);
    bool named = strstr(line, "JobState=") != NULL;
    free(line);
    if (rc != 0) return;
    if (!named) fuzz_fail("parsed a line without JobState=");
    if (!TERMINATED(st.state) || !TERMINATED(st.reason))
        fuzz_fail("a state or reason that is not a string of its array");
    if (st.phase != slurm_phase(st.state)) fuzz_fail("phase %d for '%s'", st.phase, st.state);
    if (st.phase != SLURM_PENDING && st.reason[0])
        fuzz_fail("a reason '%s' while %s", st.reason, st.state);
}

/* Whether the file has a line of more than SLURM_CONFIG_LINE_MAX bytes
 * before its first NUL (fgets reads on past one; the reader stops there). */
static bool has_long_line(const uint8_t *data, size_t size) {
    size_t run = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n') {
            run = 0;
            continue;
        }
        if (++run > SLURM_CONFIG_LINE_MAX) return true;
    }
    return false;
}

static void config(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(0, (FuzzBytes){data, size});
    SlurmConfig c;
    slurm_config_defaults(&c);
    fuzz_begin();
    int rc = slurm_config_load(&c, path);
    fuzz_end("slurm_config_load", rc != 0);
    if (rc != 0) {
        if (!strstr(error_get(), path)) fuzz_fail("an error not naming the file: %s", error_get());
        return;
    }
    if (has_long_line(data, size) && !memchr(data, '\0', size))
        fuzz_fail("a line of more than %d bytes taken", SLURM_CONFIG_LINE_MAX);
    if (!TERMINATED(c.partition) || !TERMINATED(c.account) || !TERMINATED(c.qos) ||
        !TERMINATED(c.time_limit) || !TERMINATED(c.traind) || !TERMINATED(c.mpi) ||
        !TERMINATED(c.shared_dir) || !TERMINATED(c.datasets_cache))
        fuzz_fail("a field that is not a string of its array");
    if (c.gpus_per_node < 0 || c.gpus_per_node > 1024)
        fuzz_fail("gpus_per_node %d", c.gpus_per_node);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1)
        config(data + 1, size - 1);
    else
        scontrol(data + 1, size - 1);
    return 0;
}
