/* Decode only a rectangle of a JPEG image, with libjpeg-turbo's libjpeg API.
 *
 * A training clip needs a window of each frame (the part its crop is scaled from: about half
 * of a 426 x 320 frame). jpeg_skip_scanlines() passes the rows above the window without the
 * inverse DCT, upsampling or colour conversion, jpeg_crop_scanline() restricts those to the
 * window's columns (widened to the iMCU boundary on the left), and the rows below the window
 * are only entropy-decoded. The pixels are those of decoding the whole image: the window is
 * widened by one column on either side, so that chroma upsampling at its edges sees the same
 * neighbours as in the whole image (tests/test_datasets_jpeg_window.py checks every
 * subsampling against a full decode).
 *
 * Errors and warnings (corrupt or truncated data) longjmp back here and return -1 with
 * libjpeg's message: no frame is silently padded with grey. All of the entropy-coded data is
 * read, up to the end marker, so damage is caught wherever a full decode would catch it.
 *
 * Built by the Makefile with datasets/bilinear.c into datasets/_native.so and called through
 * ctypes (datasets/jpeg_window.py); plain C, no Python headers.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct strict_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message;
    int message_size;
};

static void fail(j_common_ptr cinfo) {
    struct strict_error *err = (struct strict_error *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(err->message, err->message_size, "%s", text);
    longjmp(err->jump, 1);
}

/* Level -1 is a warning about corrupt data, which libjpeg would otherwise decode past. */
static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) fail(cinfo);
}

/* Errors and warnings of `cinfo` longjmp to err->jump with the message in `message`. */
static void strict_errors(struct jpeg_decompress_struct *cinfo, struct strict_error *err,
                          char *message, int message_size) {
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = fail;
    err->pub.emit_message = on_message;
    err->message = message;
    err->message_size = message_size;
}

static void set_error(char *message, int message_size, const char *text) {
    snprintf(message, message_size, "%s", text);
}

/* The libjpeg-turbo version this was built against, as 1002003 for 1.2.3. */
int jpeg_window_libjpeg_turbo_version(void) {
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
    return LIBJPEG_TURBO_VERSION_NUMBER;
#else
    return 0; /* a libjpeg that is not libjpeg-turbo */
#endif
}

/* The image's size. Returns 0, or -1 with a message. */
int jpeg_window_size(const unsigned char *data, unsigned long size, int *height, int *width,
                     char *message, int message_size) {
    struct jpeg_decompress_struct cinfo;
    struct strict_error err;
    strict_errors(&cinfo, &err, message, message_size);
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    *height = cinfo.image_height;
    *width = cinfo.image_width;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* Decode rows [top, bottom) and columns [left, right) of an image of dims[0] x dims[1]
 * (height x width) pixels, as RGB, into the caller's array: pixel (top + r, left + c) goes to
 * at + r * row_bytes + 3 * c. The decoder works in whole iMCU columns (8 to 32 pixels) plus
 * context, so it also writes up to 32 pixels before `left` and after `right` on each row:
 * `at` must lie inside [base, base + size), the buffer the caller owns, with that much room;
 * the call checks and fails rather than write outside it.
 * Returns 0; 1 if the image is not dims[0] x dims[1] (its size is then in dims); -1 with a
 * message on bad arguments or data.
 */
int jpeg_window_decode(const unsigned char *data, unsigned long size, int *dims, int top,
                       int bottom, int left, int right, unsigned char *base,
                       unsigned long base_size, unsigned char *at, unsigned long row_bytes,
                       char *message, int message_size) {
    int height = dims[0], width = dims[1];
    struct jpeg_decompress_struct cinfo;
    struct strict_error err;
    unsigned char *volatile scratch = NULL;
    strict_errors(&cinfo, &err, message, message_size);
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(scratch);
        return -1;
    }
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    if ((int)cinfo.image_height != height || (int)cinfo.image_width != width) {
        dims[0] = cinfo.image_height;
        dims[1] = cinfo.image_width;
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    if (top < 0 || bottom > height || top >= bottom || left < 0 || right > width ||
        left >= right) {
        set_error(message, message_size, "window outside the image");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);

    /* One column of context on either side (see the top of the file), and at least 32
     * columns: libjpeg upsamples a component that is at most 2 samples wide without
     * interpolation, which would change a narrow window's pixels. */
    int x0 = left > 0 ? left - 1 : 0;
    int x1 = right < width ? right + 1 : right;
    if (x1 - x0 < 32) {
        x1 = x0 + 32 < width ? x0 + 32 : width;
        x0 = x1 - 32 > 0 ? x1 - 32 : 0;
    }
    JDIMENSION x = x0, w = x1 - x0;
    jpeg_crop_scanline(&cinfo, &x, &w);
    /* Row r of the decoded region starts (left - x) pixels before the window's column. */
    unsigned char *first = at - (size_t)(left - (int)x) * 3;
    unsigned char *end = first + (size_t)(bottom - top - 1) * row_bytes + (size_t)w * 3;
    if (first < base || end > base + base_size) {
        set_error(message, message_size, "output buffer too small for the window");
        jpeg_abort_decompress(&cinfo);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }

    if (top > 0) jpeg_skip_scanlines(&cinfo, top);
    JSAMPROW rows[16];
    while ((int)cinfo.output_scanline < bottom) {
        int n = bottom - (int)cinfo.output_scanline;
        if (n > 16) n = 16;
        for (int i = 0; i < n; i++)
            rows[i] = first + (size_t)(cinfo.output_scanline - top + i) * row_bytes;
        jpeg_read_scanlines(&cinfo, rows, n);
    }
    /* The rows below the window: entropy-decode them and read up to the end marker, as a
     * full decode does, so that damage anywhere in the file is an error rather than a
     * silently wrong window (zeroed data, say, decodes without complaint until the data
     * runs out). jpeg_skip_scanlines() returns without reading when asked to skip to the
     * very end, so the last row is read, into a scratch row. */
    JDIMENSION rest = cinfo.output_height - cinfo.output_scanline;
    if (rest > 0) {
        if (rest > 1) jpeg_skip_scanlines(&cinfo, rest - 1);
        scratch = malloc((size_t)w * 3);
        if (scratch == NULL) {
            set_error(message, message_size, "out of memory");
            jpeg_abort_decompress(&cinfo);
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
        rows[0] = scratch;
        jpeg_read_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(scratch);
    return 0;
}
