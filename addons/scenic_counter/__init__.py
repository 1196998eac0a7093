# Box office and self-service kiosks on Tryton's sale_point.
