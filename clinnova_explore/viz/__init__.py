"""HoloViews plot builders and dashboard state shared by notebooks, dashboards and reports."""
