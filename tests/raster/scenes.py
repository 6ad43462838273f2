"""Scene values without a file behind them, for tests of the layers that pass scenes."""

from __future__ import annotations

from geoal.raster.scene import Scene

UTM17 = "EPSG:32617"


def fake_scene(
    scene_id: int = 1,
    name: str = "scene",
    width: int = 200,
    height: int = 150,
    transform: tuple[float, ...] = (0.5, 0.0, 404000.0, 0.0, -0.5, 3285000.0),
    crs: str | None = UTM17,
) -> Scene:
    """A 3-band uint8 scene at ``/data/<name>.tif`` (fingerprint ``fp-<name>``), 64 px chips."""
    a, b, c, d, e, f = (float(v) for v in transform)
    return Scene(
        id=scene_id,
        path=f"/data/{name}.tif",
        name=name,
        fingerprint=f"fp-{name}",
        driver="GTiff",
        width=width,
        height=height,
        band_count=3,
        dtype="uint8",
        crs=crs,
        transform=(a, b, c, d, e, f),
        nodata=None,
        bands=(1, 2, 3),
        stretch=None,
        chip_size=64,
        overlap=0.25,
    )
