"""Shared by the semantic-synthesis runners (`guidance_scale_sweep`, `guidance_window`) and
`repro sample semantic`: guided sampling of label maps and scoring of the generated images
(000 thesis Sec. 4.5, 5.2.5, 5.4.4, 5.4.5)."""
