"""Raw PhysioNet files to modality tables (data flows: data -> models -> training -> evaluation -> reporting)."""
