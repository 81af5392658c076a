"""Colours, fonts and the dark style sheet: the screen is read from two metres in a dim room."""

from __future__ import annotations

# Okabe-Ito colours, distinguishable with the common colour-vision deficiencies.
CLASS_COLOURS: dict[str, str] = {
    "nerve": "#F0E442",  # yellow
    "artery": "#D55E00",  # vermillion (red)
    "vein": "#56B4E9",  # sky blue: Okabe-Ito #0072B2 is too dark on a dim ultrasound image
    "vessel": "#CC79A7",  # reddish purple: a vessel the model does not split into artery/vein
}
FALLBACK_COLOURS = ("#009E73", "#56B4E9", "#E69F00", "#FFFFFF")
TARGET_COLOUR = "#FFFFFF"
NEEDLE_COLOUR = "#00E0A8"  # bright bluish green (Okabe-Ito's #009E73, lightened for a dark image)
ROI_COLOUR = "#9AA0A6"  # neutral: must not look like a structure

BG = "#101214"
PANEL = "#1A1D21"
TEXT = "#E8E8E8"
MUTED = "#9AA0A6"
ACCENT = "#56B4E9"
WARN = "#E69F00"
ALARM = "#D55E00"

BASE_FONT_PT = 15
BANNER_FONT_PT = 30
TARGET_FONT_PT = 22
LABEL_FONT_PT = 14  # the needle's label, a vessel's behaviour: read at a glance, under the target's


def class_colour(name: str, index: int = 0) -> str:
    """Colour for a class name; unknown names get a stable fallback by class index."""
    return CLASS_COLOURS.get(name, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


STYLE_SHEET = f"""
QWidget {{ background: {BG}; color: {TEXT}; font-size: {BASE_FONT_PT}pt; }}
QMainWindow, QStatusBar {{ background: {BG}; }}
QStatusBar {{ border-top: 1px solid #2A2F35; }}
QStatusBar QLabel {{ padding: 2px 10px; color: {TEXT}; }}
QFrame#panel, QGroupBox {{ background: {PANEL}; border: 1px solid #2A2F35; border-radius: 6px; }}
QGroupBox {{ margin-top: 18px; padding: 4px 8px 4px 8px; font-weight: bold; }}
QGroupBox QLabel, QGroupBox QCheckBox {{ background: transparent; }}
QTabWidget QGroupBox {{ margin-top: 0px; border: none; padding: 4px 4px 4px 4px; }}
QTabBar::tab {{ background: #262B31; color: {MUTED}; border: 1px solid #3A4048;
                border-bottom: none; border-top-left-radius: 6px; border-top-right-radius: 6px;
                padding: 6px 9px; margin-right: 2px; }}
QTabBar::tab:selected {{ background: {PANEL}; color: {TEXT}; font-weight: bold;
                         border-color: {ACCENT}; }}
QTabWidget::pane {{ border: 1px solid #2A2F35; border-radius: 6px; background: {PANEL}; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {MUTED}; }}
QPushButton {{ background: #262B31; border: 1px solid #3A4048; border-radius: 6px;
               padding: 8px 12px; }}
QPushButton:hover {{ border-color: {ACCENT}; }}
QPushButton:checked {{ background: {ACCENT}; color: #000000; font-weight: bold; }}
QPushButton:disabled {{ color: #5A6068; }}
QSlider::groove:horizontal {{ height: 8px; background: #2A2F35; border-radius: 4px; }}
QSlider::handle:horizontal {{ background: {ACCENT}; width: 22px; margin: -8px 0;
                              border-radius: 11px; }}
QCheckBox::indicator {{ width: 22px; height: 22px; }}
QLabel#banner {{ font-size: {BANNER_FONT_PT}pt; font-weight: bold; color: #000000;
                 border-radius: 8px; padding: 6px 24px; }}
QLabel#target {{ font-size: {TARGET_FONT_PT}pt; font-weight: bold; }}
QLabel#muted {{ color: {MUTED}; }}
QMenuBar, QMenu {{ background: {PANEL}; }}
QMenu::item:selected, QMenuBar::item:selected {{ background: {ACCENT}; color: #000000; }}
"""
