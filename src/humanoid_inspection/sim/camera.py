"""The simulated RGB-D head camera: pinhole intrinsics and offscreen MuJoCo rendering.

Conventions:
- The camera is an MJCF camera fixed to the body of `head_camera_optical_frame`. A MuJoCo camera
  looks down its -z axis with +y up; the ROS optical frame looks down +z with +y down, so the
  MJCF camera frame is the optical frame turned 180 degrees about x (`OPTICAL_TO_MJCF`).
- Intrinsics of a 640x480 render with vertical field of view fovy: fy = (H / 2) / tan(fovy / 2),
  fx = fy (square pixels), principal point at the image centre in the ROS/OpenCV convention
  where the centre of pixel (u, v) has coordinates (u, v): cx = (W - 1) / 2, cy = (H - 1) / 2.
- Depth is registered to colour (same camera, same intrinsics) and is the z distance along the
  optical axis in metres (what MuJoCo's depth render gives); pixels farther than `max_range`
  (no return: the far plane) are NaN.

The renderer owns an OpenGL context (osmesa when MUJOCO_GL=osmesa): create, use and close it in
one thread. close() it explicitly, otherwise its destructor complains at interpreter exit.
"""

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

# Rotation taking vectors in the MJCF camera frame to the ROS optical frame (and back: it is its
# own inverse): diag(1, -1, -1).
OPTICAL_TO_MJCF = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Pinhole model of an image (pixels)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fovy(cls, width: int, height: int, fovy_deg: float) -> 'PinholeIntrinsics':
        """Intrinsics of a MuJoCo camera with vertical field of view fovy_deg (degrees)."""
        if width <= 0 or height <= 0:
            raise ValueError(f'image size must be positive, got {width}x{height}')
        if not 0.0 < fovy_deg < 180.0:
            raise ValueError(f'fovy must be in (0, 180) degrees, got {fovy_deg}')
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
        return cls(int(width), int(height), f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @property
    def k(self) -> Tuple[float, ...]:
        """Row-major 3x3 camera matrix (sensor_msgs/CameraInfo.k)."""
        return (self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0)

    @property
    def p(self) -> Tuple[float, ...]:
        """Row-major 3x4 projection matrix (sensor_msgs/CameraInfo.p), no baseline."""
        return (self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0)

    def project(self, points_optical: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2) of points (N, 3) given in the optical frame (z > 0)."""
        pts = np.atleast_2d(points_optical)
        return np.stack([self.fx * pts[:, 0] / pts[:, 2] + self.cx,
                         self.fy * pts[:, 1] / pts[:, 2] + self.cy], axis=1)


@dataclass
class RgbdFrame:
    """One rendered frame: rgb (H, W, 3) uint8, depth (H, W) float32 metres (NaN = none)."""

    rgb: np.ndarray
    depth: np.ndarray
    sim_time: float


class RgbdCamera:
    """Offscreen colour + depth rendering of one MJCF camera of a model.

    One mjr_render per frame, colour and depth read back together (mujoco.Renderer would
    render the scene twice); the depth buffer (reverse-Z, as MuJoCo sets up its projection)
    is converted to metres with the same float32 constants mujoco.Renderer uses.
    """

    def __init__(self, model, camera: str, width: int = 640, height: int = 480,
                 max_range: float = 8.0, min_range: float = 0.0):
        """Create the OpenGL context and the MuJoCo render context in the calling thread.

        Args:
            model: the mujoco.MjModel (its offscreen buffer must be at least width x height).
            camera: name of the MJCF camera.
            width: image width (px).
            height: image height (px).
            max_range: depth beyond this (m) is reported as NaN (no return).
            min_range: depth below this (m) is reported as NaN (too close).

        Raises:
            ValueError: unknown camera or a framebuffer smaller than the image.
        """
        import mujoco
        self._mj = mujoco
        self.model = model
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.camera_id < 0:
            raise ValueError(f"the model has no camera named '{camera}'")
        if model.vis.global_.offwidth < width or model.vis.global_.offheight < height:
            raise ValueError(
                f'offscreen buffer {model.vis.global_.offwidth}x{model.vis.global_.offheight} '
                f'is smaller than the image {width}x{height}')
        self.intrinsics = PinholeIntrinsics.from_fovy(
            width, height, float(model.cam_fovy[self.camera_id]))
        self.max_range = float(max_range)
        self.min_range = float(min_range)
        self._closed = True
        self._gl = mujoco.GLContext(width, height)
        self._gl.make_current()
        self._ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._ctx)
        self._ctx.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR   # as mujoco.Renderer
        self._closed = False
        self._scene = mujoco.MjvScene(model, maxgeom=4000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0      # ~25 % faster on osmesa
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._option = mujoco.MjvOption()
        self._perturb = mujoco.MjvPerturb()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = self.camera_id
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._rgb = np.empty((height, width, 3), dtype=np.uint8)
        self._zbuf = np.empty((height, width), dtype=np.float32)
        extent = model.stat.extent
        znear = np.float32(model.vis.map.znear * extent)
        zfar = np.float32(model.vis.map.zfar * extent)
        c_coef = -(zfar + znear) / (zfar - znear)
        d_coef = -(np.float32(2) * zfar * znear) / (zfar - znear)
        self._c = float(np.float32(-0.5) * c_coef - np.float32(0.5))
        self._d = float(np.float32(-0.5) * d_coef)

    def render(self, data, sim_time: Optional[float] = None) -> RgbdFrame:
        """Render colour and depth of data's current (forward-computed) state."""
        if self._closed:
            raise RuntimeError('the camera renderer is closed')
        mj = self._mj
        self._gl.make_current()
        mj.mjv_updateScene(self.model, data, self._option, self._perturb, self._camera,
                           mj.mjtCatBit.mjCAT_ALL, self._scene)
        mj.mjr_render(self._rect, self._scene, self._ctx)
        mj.mjr_readPixels(self._rgb, self._zbuf, self._rect, self._ctx)
        rgb = np.flipud(self._rgb).copy()
        depth = (self._d / (np.flipud(self._zbuf).astype(np.float64) + self._c)).astype(
            np.float32)
        depth[~((depth < self.max_range) & (depth > self.min_range))] = np.nan
        return RgbdFrame(rgb, depth, float(data.time if sim_time is None else sim_time))

    def optical_pose_world(self, data) -> np.ndarray:
        """4x4 pose of the camera's optical frame in the world, from data's current state."""
        pose = np.eye(4)
        pose[:3, :3] = data.cam_xmat[self.camera_id].reshape(3, 3) @ OPTICAL_TO_MJCF
        pose[:3, 3] = data.cam_xpos[self.camera_id]
        return pose

    def close(self) -> None:
        """Free the render context and the OpenGL context (idempotent)."""
        if not self._closed:
            self._closed = True
            self._gl.make_current()
            self._ctx.free()
            self._gl.free()

    def __enter__(self) -> 'RgbdCamera':
        """Context-manager entry."""
        return self

    def __exit__(self, *exc) -> None:
        """Context-manager exit: close()."""
        self.close()
