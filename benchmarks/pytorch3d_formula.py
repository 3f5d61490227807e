"""PyTorch3D's soft silhouette, written from its documented formula (not its code), in NumPy.

PyTorch3D (``SoftSilhouetteShader`` with
``RasterizationSettings(blur_radius=log(1/1e-4 - 1) * sigma, faces_per_pixel=K)``) keeps, per
pixel, the K faces nearest to the camera (by interpolated depth) among those whose squared screen
distance d^2 (NDC units) is below ``blur_radius`` or that contain the pixel, and returns
``alpha = 1 - prod_k (1 - sigmoid(s_k d_k^2 / sigma))`` with s_k = +1 inside and -1 outside. This
is an independent dense reference (all pixels x all faces, float64) used to check that
``diffalg.rendering.render_silhouette(..., tau=sigma, squared=True)`` draws the same image (the
rendering tests and ``bench_rendering.py --compare``). Pixel centres follow diffalg's convention
(x right, y up, NDC scaled by the image height); PyTorch3D's +x points left, which only mirrors
the image.
"""
import numpy as np


def _seg_dist2(px, py, ax, ay, bx, by):
    "Squared distance from points (P, 1) to segments (1, F)."
    ex, ey = bx - ax, by - ay
    ll = np.maximum(ex * ex + ey * ey, 1e-30)
    t = np.clip(((px - ax) * ex + (py - ay) * ey) / ll, 0.0, 1.0)
    qx, qy = px - ax - t * ex, py - ay - t * ey
    return qx * qx + qy * qy


def soft_silhouette(tri_xy, tri_depth, H, W, sigma=1e-4, faces_per_pixel=None, eps=1e-4,
                    rows_per_chunk=8):
    """Soft silhouette (H, W) of screen triangles ``tri_xy`` (F, 3, 2) with vertex depths
    ``tri_depth`` (F, 3).

    ``faces_per_pixel=None`` keeps every face within the blur radius (no K limit)."""
    tri_xy, tri_depth = np.asarray(tri_xy, np.float64), np.asarray(tri_depth, np.float64)
    blur = np.log(1.0 / eps - 1.0) * sigma                       # threshold on the squared distance
    xs = (2 * np.arange(W) + 1 - W) / H
    ys = (H - 1 - 2 * np.arange(H)) / H
    (ax, ay), (bx, by), (cx, cy) = [(tri_xy[None, :, j, 0], tri_xy[None, :, j, 1])
                                    for j in range(3)]
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    ok = np.abs(area) > 1e-30
    safe = np.where(ok, area, 1.0)
    out = np.zeros((H, W))
    for r0 in range(0, H, rows_per_chunk):
        py, px = np.meshgrid(ys[r0:r0 + rows_per_chunk], xs, indexing="ij")
        px, py = px.reshape(-1, 1), py.reshape(-1, 1)
        d2 = np.minimum(np.minimum(_seg_dist2(px, py, ax, ay, bx, by),
                                   _seg_dist2(px, py, bx, by, cx, cy)),
                        _seg_dist2(px, py, cx, cy, ax, ay))
        w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / safe     # barycentric weights
        w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / safe
        w2 = 1.0 - w0 - w1
        inside = ok & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        keep = inside | (ok & (d2 < blur))
        prob = 0.5 * (1.0 + np.tanh(np.where(inside, d2, -d2) / (2 * sigma)))  # sigmoid
        if faces_per_pixel is not None:
            w = np.clip(np.stack([w0, w1, w2], -1), 0.0, None)  # clipped barycentrics, as with blur
            w = w / np.maximum(w.sum(-1, keepdims=True), 1e-30)
            z = (w * tri_depth[None]).sum(-1)
            z = np.where(keep, z, np.inf)
            order = np.argsort(z, axis=1, kind="stable")[:, :faces_per_pixel]
            keep = np.take_along_axis(keep, order, 1)
            prob = np.take_along_axis(prob, order, 1)
        log_miss = np.where(keep, np.log1p(-np.minimum(prob, 1 - 1e-16)), 0.0).sum(1)
        out[r0:r0 + rows_per_chunk] = (-np.expm1(log_miss)).reshape(-1, W)
    return out
